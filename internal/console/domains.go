package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtastscache"
)

type domainRow struct {
	Domain  string
	Seen    *domainState
	STS     *mtastscache.Entry
	Expired bool
	// Enforce says how the domain would fare under an enforcing MTA-STS policy.
	Enforce string
	Warn    bool
}

type domainsData struct {
	Rows   []domainRow
	STSErr string
}

// enforceVerdict says, for a domain's sessions in the last 24 hours (seen by this node), whether they would
// have failed under an enforcing MTA-STS policy: the evidence an administrator needs before asking a
// partner to move to enforce. For a domain already under enforce it only says so.
func enforceVerdict(ds *domainState, now time.Time) (string, bool) {
	if ds == nil {
		return "no TLS session seen", false
	}
	if ds.Plan == "mta-sts enforce" {
		if !ds.FailingSince.IsZero() {
			return "failing enforce since " + ds.FailingSince.UTC().Format("2006-01-02 15:04Z"), true
		}
		return "enforced", false
	}
	sessions, fail := ds.window(now)
	switch {
	case sessions == 0:
		return "no TLS session seen in 24 h", false
	case fail == 0:
		return fmt.Sprintf("would fail under enforce: 0 of %d sessions in 24 h (all verified)", sessions), false
	}
	return fmt.Sprintf("would fail under enforce: %d of %d sessions in 24 h (last: %s)", fail, sessions, lastWhy(ds)), true
}

func lastWhy(ds *domainState) string {
	if ds.ResultType != "" {
		return string(ds.ResultType)
	}
	if ds.TLS == "" {
		return "no session"
	}
	return ds.TLS
}

func (c *Console) domainsList(w http.ResponseWriter, r *http.Request, s *session) {
	if q := strings.TrimSpace(r.URL.Query().Get("d")); q != "" {
		dom, err := address.ParseDomain(q)
		if err != nil {
			c.renderError(w, r, s, http.StatusBadRequest, "invalid domain: "+err.Error())
			return
		}
		http.Redirect(w, r, "/domains/"+url.PathEscape(dom.String()), http.StatusSeeOther)
		return
	}
	now := c.now()
	rows := map[string]*domainRow{}
	for _, ds := range c.timeline.domainList() {
		ds := ds
		rows[ds.Domain] = &domainRow{Domain: ds.Domain, Seen: &ds}
	}
	var d domainsData
	entries, err := c.opts.STS.List(r.Context())
	if err != nil {
		c.log.Error("console: sts cache list", "err", err)
		d.STSErr = err.Error()
	}
	for _, e := range entries {
		e := e
		name := e.Domain.String()
		row, ok := rows[name]
		if !ok {
			row = &domainRow{Domain: name}
			rows[name] = row
		}
		row.STS, row.Expired = &e, e.Expired(now)
	}
	for _, row := range rows {
		row.Enforce, row.Warn = enforceVerdict(row.Seen, now)
		d.Rows = append(d.Rows, *row)
	}
	slices.SortFunc(d.Rows, func(a, b domainRow) int { return strings.Compare(a.Domain, b.Domain) })
	c.render(w, r, s, http.StatusOK, "domains", "Domains", d)
}

type domainData struct {
	Domain     string
	Unicode    string
	Seen       *domainState
	Enforce    string
	Warn       bool
	STS        *mtastscache.Entry
	Expired    bool
	Explained  bool
	Explain    delivery.Explanation
	ExplainRaw string
	ExplainErr string
}

func (c *Console) domainDetail(w http.ResponseWriter, r *http.Request, s *session) {
	dom, err := address.ParseDomain(r.PathValue("domain"))
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, "invalid domain: "+err.Error())
		return
	}
	d := domainData{Domain: dom.String()}
	if u := dom.Unicode(); u != d.Domain {
		d.Unicode = u
	}
	if ds, ok := c.timeline.domain(d.Domain); ok {
		d.Seen = &ds
	}
	d.Enforce, d.Warn = enforceVerdict(d.Seen, c.now())
	e, err := c.opts.STS.Show(r.Context(), dom)
	switch {
	case err == nil:
		d.STS, d.Expired = &e, e.Expired(c.now())
	case !errors.Is(err, mtastscache.ErrNotCached):
		c.fail(w, r, s, err)
		return
	}
	if c.opts.Explain != nil {
		ctx, cancel := context.WithTimeout(r.Context(), explainBudget)
		e, err := c.opts.Explain(ctx, delivery.PlanRequest{Domain: address.DomainHost(dom)})
		cancel()
		if err != nil {
			d.ExplainErr = err.Error()
		} else if raw, err := json.MarshalIndent(e, "", "  "); err != nil {
			d.ExplainErr = err.Error()
		} else {
			// The page lays out the main fields and shows the whole explanation as the API sends it.
			d.Explain, d.ExplainRaw, d.Explained = e, string(raw), true
		}
	}
	c.render(w, r, s, http.StatusOK, "domain", "Domain "+d.Domain, d)
}

// backTo returns the form's "next" when it is a console path, def otherwise.
func backTo(r *http.Request, def string) string {
	if n := r.PostForm.Get("next"); n != "" && localPath(n) == n {
		return n
	}
	return def
}

func (c *Console) domainRefresh(w http.ResponseWriter, r *http.Request, s *session) {
	dom, err := address.ParseDomain(r.PathValue("domain"))
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, "invalid domain: "+err.Error())
		return
	}
	e, err := c.opts.STS.Refresh(r.Context(), dom)
	msg := fmt.Sprintf("Refreshed the MTA-STS policy of %s: id %s, mode %s, max_age %ds.", dom, e.ID, e.Mode, int64(e.MaxAge/time.Second))
	if err != nil {
		msg = fmt.Sprintf("Refreshing the MTA-STS policy of %s failed: %v", dom, err)
	}
	c.log.Info("console: sts cache refresh", "domain", dom.String(), "ip", remoteIP(r), "err", err)
	c.done(w, r, s, backTo(r, "/domains"), msg)
}

func (c *Console) domainFlush(w http.ResponseWriter, r *http.Request, s *session) {
	dom, err := address.ParseDomain(r.PathValue("domain"))
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, "invalid domain: "+err.Error())
		return
	}
	msg := fmt.Sprintf("Flushed the cached MTA-STS policy of %s; the next delivery fetches it again.", dom)
	if err := c.opts.STS.Flush(r.Context(), dom); err != nil {
		msg = fmt.Sprintf("Flushing the MTA-STS policy of %s failed: %v", dom, err)
	}
	c.log.Info("console: sts cache flush", "domain", dom.String(), "ip", remoteIP(r))
	c.done(w, r, s, backTo(r, "/domains"), msg)
}
