package console

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlsreport"
)

// Limits of what one page shows.
const (
	maxListed     = 500
	maxSelected   = 500
	maxSentShown  = 200
	explainBudget = 15 * time.Second
)

// fail renders err from a collaborator with the status it deserves and logs server-side failures.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, queue.ErrNotFound), errors.Is(err, mtastscache.ErrNotCached), errors.Is(err, tlsreport.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, address.ErrSyntax), errors.Is(err, settings.ErrUnknownKey), errors.Is(err, settings.ErrInvalidValue):
		code = http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	if code == http.StatusInternalServerError {
		c.log.Error("console: request failed", "path", r.URL.Path, "err", err)
	}
	c.renderError(w, r, s, code, err.Error())
}

// ---- dashboard ----

type countRow struct {
	Name  string
	Count int
}

type dashboardData struct {
	Stats                   stats
	Out, Attempts           int
	TLSShare, VerifiedShare string
	Deferrals               []countRow
	Summary                 queue.Summary
	QueuedRcpts             int
	SummaryErr              string
	Failing                 []domainState
	Chart                   chart
	Generation              int
	Components              []admin.Component
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	now := c.now()
	st := c.timeline.stats(now)
	d := dashboardData{Stats: st, Chart: tlsChart(st.Hours), Generation: c.opts.Settings.Current().Generation, Components: c.components()}
	for i := range numClasses {
		d.Out += st.Delivered[i]
		d.Attempts += st.Attempts[i]
	}
	d.TLSShare = pct(st.Delivered[classUnverified]+st.Delivered[classVerified], d.Out)
	d.VerifiedShare = pct(st.Delivered[classVerified], d.Out)
	for rt, n := range st.Deferrals {
		if rt == "" {
			rt = "(not a TLS or policy failure)"
		}
		d.Deferrals = append(d.Deferrals, countRow{rt, n})
	}
	slices.SortFunc(d.Deferrals, func(a, b countRow) int { return cmp.Or(b.Count-a.Count, strings.Compare(a.Name, b.Name)) })
	sum, err := c.opts.Queue.Summary(r.Context())
	if err != nil {
		c.log.Error("console: queue summary", "err", err)
		d.SummaryErr = err.Error()
	}
	d.Summary, d.QueuedRcpts = sum, sum.RecipientsByState["queued"]
	for _, f := range c.timeline.failingEnforce() {
		if now.Sub(f.LastSeen) < window {
			d.Failing = append(d.Failing, f)
		}
	}
	c.render(w, r, s, http.StatusOK, "dashboard", "Dashboard", d)
}

// ---- queue ----

type queueFilter struct {
	Domain, Sender, State, Held, Error string
}

func (f queueFilter) Query() string {
	v := url.Values{}
	for k, s := range map[string]string{"domain": f.Domain, "sender": f.Sender, "state": f.State, "held": f.Held, "error": f.Error} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

type queueData struct {
	Filter    queueFilter
	FilterErr string
	Messages  []queue.MessageInfo
	Truncated bool
	States    []string
}

func (c *Console) queueList(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := queueData{
		Filter: queueFilter{Domain: strings.TrimSpace(q.Get("domain")), Sender: strings.TrimSpace(q.Get("sender")),
			State: q.Get("state"), Held: q.Get("held"), Error: strings.TrimSpace(q.Get("error"))},
		States: []string{"queued", "delivered", "failed", "quarantined"},
	}
	f := queue.Filter{Sender: d.Filter.Sender, Limit: maxListed + 1}
	var errs []string
	if d.Filter.Domain != "" {
		dom, err := address.ParseDomain(d.Filter.Domain)
		if err != nil {
			errs = append(errs, "domain: "+err.Error())
		} else {
			f.Domain = dom.String()
		}
	}
	if d.Filter.State != "" {
		if !slices.Contains(d.States, d.Filter.State) {
			errs = append(errs, fmt.Sprintf("state: unknown state %q", d.Filter.State))
		} else {
			f.State = d.Filter.State
		}
	}
	switch d.Filter.Held {
	case "":
	case "true":
		f.HeldOnly = true
	default:
		errs = append(errs, "held: want true or nothing")
	}
	code := http.StatusOK
	if len(errs) > 0 {
		d.FilterErr = strings.Join(errs, "; ")
		code = http.StatusBadRequest
	} else {
		list, err := c.opts.Queue.List(r.Context(), f)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		if d.Filter.Error != "" {
			needle := strings.ToLower(d.Filter.Error)
			list = slices.DeleteFunc(list, func(m queue.MessageInfo) bool { return !strings.Contains(strings.ToLower(m.LastError), needle) })
		}
		if len(list) > maxListed {
			list, d.Truncated = list[:maxListed], true
		}
		d.Messages = list
	}
	c.render(w, r, s, code, "queue", "Queue", d)
}

type messageData struct {
	M       queue.MessageDetail
	Actions []string
}

func (c *Console) queueDetail(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	m, err := c.opts.Queue.Get(r.Context(), id)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "message", "Message "+id, messageData{M: m, Actions: queueActions()})
}

func queueActions() []string { return []string{"retry", "hold", "release", "bounce", "delete"} }

// checkID accepts what looks like a queue id; the queue decides whether it exists.
func checkID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("invalid message id %q", id)
	}
	for _, ch := range id {
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '-' || ch == '_' || ch == '.') {
			return fmt.Errorf("invalid message id %q", id)
		}
	}
	return nil
}

// affected is what an action would do to one message.
type affected struct {
	ID, From string
	Domains  []string
	// Rcpts is how many recipients the action changes; Skip says why the action does nothing here.
	Rcpts int
	Skip  string
}

type confirmData struct {
	Action, Verb, Explain string
	Messages              []affected
	// Count is the messages the action changes, Rcpts their recipients; Missing lists unknown ids.
	Count, Rcpts int
	Missing      []string
	IDs          []string
	Back         string
}

func actionText(action string) (verb, explain string, ok bool) {
	switch action {
	case "retry":
		return "Retry", "Every queued recipient becomes due now; the scheduler delivers at once.", true
	case "hold":
		return "Hold", "No further delivery is attempted until the message is released; a delivery in progress finishes.", true
	case "release":
		return "Release", "Held messages go back to the queue and are delivered when due.", true
	case "bounce":
		return "Bounce", "Every recipient not yet delivered fails now with 5.0.0, and the sender gets a bounce (DSN) as its NOTIFY asks.", true
	case "delete":
		return "Delete", "The message, its body and its history are removed without notifying anyone. Recipients not yet delivered will never get it.", true
	}
	return "", "", false
}

func (c *Console) queueConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	action := q.Get("action")
	verb, explain, ok := actionText(action)
	if !ok {
		c.renderError(w, r, s, http.StatusBadRequest, fmt.Sprintf("unknown action %q", action))
		return
	}
	ids := q["id"]
	if len(ids) == 0 {
		c.renderError(w, r, s, http.StatusBadRequest, "No message selected: tick the messages first.")
		return
	}
	if len(ids) > maxSelected {
		c.renderError(w, r, s, http.StatusBadRequest, fmt.Sprintf("At most %d messages at once.", maxSelected))
		return
	}
	d := confirmData{Action: action, Verb: verb, Explain: explain, Back: "/queue"}
	if len(ids) == 1 {
		d.Back = "/queue/" + url.PathEscape(ids[0])
	}
	for _, id := range ids {
		if err := checkID(id); err != nil {
			c.renderError(w, r, s, http.StatusBadRequest, err.Error())
			return
		}
		if slices.Contains(d.IDs, id) {
			continue
		}
		m, err := c.opts.Queue.Get(r.Context(), id)
		if errors.Is(err, queue.ErrNotFound) {
			d.Missing = append(d.Missing, id)
			continue
		}
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		a := affected{ID: id, From: m.From, Domains: m.Domains}
		switch action {
		case "retry":
			a.Rcpts = m.Queued
			if m.Queued == 0 {
				a.Skip = "no queued recipient"
			} else if m.Held {
				a.Skip = "held: release it to deliver"
			}
		case "hold":
			a.Rcpts = m.Queued
			if m.Held {
				a.Skip = "already held"
			}
		case "release":
			a.Rcpts = m.Queued
			if !m.Held {
				a.Skip = "not held"
			}
		case "bounce":
			a.Rcpts = m.Queued + m.Quarantined
			if a.Rcpts == 0 {
				a.Skip = "no recipient left to bounce"
			}
		case "delete":
			a.Rcpts = m.Queued + m.Quarantined
		}
		if a.Skip == "" {
			d.Count++
			d.Rcpts += a.Rcpts
		}
		d.IDs = append(d.IDs, id)
		d.Messages = append(d.Messages, a)
	}
	c.render(w, r, s, http.StatusOK, "confirm", verb+" messages", d)
}

func (c *Console) queueAction(w http.ResponseWriter, r *http.Request, s *session) {
	action := r.PostForm.Get("action")
	verb, _, ok := actionText(action)
	if !ok {
		c.renderError(w, r, s, http.StatusBadRequest, fmt.Sprintf("unknown action %q", action))
		return
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 || len(ids) > maxSelected {
		c.renderError(w, r, s, http.StatusBadRequest, "No message (or too many) selected.")
		return
	}
	do := map[string]func(context.Context, string) error{
		"retry": c.opts.Queue.Retry, "hold": c.opts.Queue.Hold, "release": c.opts.Queue.Release,
		"bounce": c.opts.Queue.Bounce, "delete": c.opts.Queue.Delete,
	}[action]
	var done int
	var problems []string
	for _, id := range ids {
		if err := checkID(id); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if err := do(r.Context(), id); err != nil {
			if !errors.Is(err, queue.ErrNotFound) {
				c.log.Error("console: queue action", "action", action, "msg_id", id, "err", err)
			}
			problems = append(problems, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		c.log.Info("console: queue "+action, "msg_id", id, "ip", remoteIP(r))
		done++
	}
	msg := fmt.Sprintf("%s: done for %d of %d message(s).", verb, done, len(ids))
	if len(problems) > 0 {
		msg += " Failed: " + strings.Join(problems, "; ")
	}
	to := "/queue"
	if len(ids) == 1 && action != "delete" && checkID(ids[0]) == nil {
		to = "/queue/" + url.PathEscape(ids[0])
	}
	c.done(w, r, s, to, msg)
}

// ---- domains ----

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

// enforceVerdict says, for a domain's observed deliveries, whether they would have failed under an
// enforcing MTA-STS policy. For a domain already under enforce it only says so.
func enforceVerdict(ds *domainState) (string, bool) {
	if ds == nil || ds.Attempts == 0 {
		return "no TLS session seen", false
	}
	if ds.Plan == "mta-sts enforce" {
		if !ds.FailingSince.IsZero() {
			return "failing enforce since " + ds.FailingSince.UTC().Format("2006-01-02 15:04Z"), true
		}
		return "enforced", false
	}
	if ds.WouldFail == 0 {
		return fmt.Sprintf("no: all %d sessions verified", ds.Attempts), false
	}
	return fmt.Sprintf("yes: %d of %d sessions (last: %s)", ds.WouldFail, ds.Attempts, lastWhy(ds)), true
}

func lastWhy(ds *domainState) string {
	if ds.ResultType != "" {
		return ds.ResultType
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
		row.Enforce, row.Warn = enforceVerdict(row.Seen)
		d.Rows = append(d.Rows, *row)
	}
	slices.SortFunc(d.Rows, func(a, b domainRow) int { return strings.Compare(a.Domain, b.Domain) })
	c.render(w, r, s, http.StatusOK, "domains", "Domains", d)
}

// explanation is the part of the daemon's policy explanation the page lays out; the rest is shown as JSON.
type explanation struct {
	Domain           string   `json:"domain"`
	Route            []string `json:"route"`
	Plan             string   `json:"plan"`
	Source           string   `json:"source"`
	Level            string   `json:"level"`
	Reason           string   `json:"reason"`
	STSMode          string   `json:"sts_mode"`
	STSID            string   `json:"sts_id"`
	DiscoveryFailure string   `json:"discovery_failure"`
	MXError          string   `json:"mx_error"`
	MX               []struct {
		Host    string `json:"host"`
		Pref    int    `json:"pref"`
		Allowed bool   `json:"allowed"`
		Failure string `json:"failure"`
		Detail  string `json:"detail"`
	} `json:"mx"`
	Settings struct {
		EnableMTASTS bool   `json:"Sender.EnableMTASTS"`
		Rule         string `json:"rule"`
	} `json:"settings"`
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
	Explain    explanation
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
	d.Enforce, d.Warn = enforceVerdict(d.Seen)
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
		v, err := c.opts.Explain(ctx, d.Domain)
		cancel()
		if err != nil {
			d.ExplainErr = err.Error()
		} else if raw, err := json.MarshalIndent(v, "", "  "); err != nil {
			d.ExplainErr = err.Error()
		} else {
			d.ExplainRaw = string(raw)
			if err := json.Unmarshal(raw, &d.Explain); err == nil {
				d.Explained = true
			}
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

// ---- TLS reports ----

type reportsData struct {
	DKIM         *admin.DKIMRecord
	DKIMErr      string
	Off          bool
	Pending      []tlsreport.PendingSummary
	PendingErr   string
	Sent         []tlsreport.SentReport
	SentTotal    int
	SentErr      string
	Suppressions []tlsreport.Suppression
	SuppErr      string
	Today        string
}

func (c *Console) reporter() *tlsreport.Reporter {
	if c.opts.Reports == nil {
		return nil
	}
	return c.opts.Reports()
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (c *Console) reportsPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := reportsData{Today: c.now().UTC().Format("2006-01-02")}
	c.dkimRecord(r.Context(), &d)
	rep := c.reporter()
	if rep == nil {
		d.Off = true
		c.render(w, r, s, http.StatusOK, "reports", "TLS reports", d)
		return
	}
	var err error
	d.Pending, err = rep.Pending(r.Context())
	d.PendingErr = errText(err)
	sent, err := rep.Sent(r.Context())
	d.SentErr = errText(err)
	d.SentTotal = len(sent)
	slices.Reverse(sent)
	if len(sent) > maxSentShown {
		sent = sent[:maxSentShown]
	}
	d.Sent = sent
	d.Suppressions, err = rep.Suppressions(r.Context())
	d.SuppErr = errText(err)
	c.render(w, r, s, http.StatusOK, "reports", "TLS reports", d)
}

type previewData struct {
	Domain, Day, JSON string
}

func (c *Console) reportPreview(w http.ResponseWriter, r *http.Request, s *session) {
	rep := c.reporter()
	if rep == nil {
		c.renderError(w, r, s, http.StatusNotFound, "TLS reporting is off on this node.")
		return
	}
	q := r.URL.Query()
	dom, err := address.ParseDomain(q.Get("domain"))
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, "invalid domain: "+err.Error())
		return
	}
	dayStr := q.Get("day")
	if dayStr == "" {
		dayStr = c.now().UTC().Format("2006-01-02")
	}
	day, err := time.Parse("2006-01-02", dayStr)
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, fmt.Sprintf("invalid day %q: want YYYY-MM-DD", dayStr))
		return
	}
	rp, err := rep.Preview(r.Context(), dom.String(), day)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	raw, err := json.MarshalIndent(rp, "", "  ")
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "preview", "TLS report preview", previewData{Domain: dom.String(), Day: dayStr, JSON: string(raw)})
}

func (c *Console) reportSuppress(w http.ResponseWriter, r *http.Request, s *session) {
	rep := c.reporter()
	if rep == nil {
		c.renderError(w, r, s, http.StatusNotFound, "TLS reporting is off on this node.")
		return
	}
	entry := strings.TrimSpace(r.PostForm.Get("entry"))
	msg := fmt.Sprintf("%s added to the suppression list.", entry)
	if err := rep.Suppress(r.Context(), entry, strings.TrimSpace(r.PostForm.Get("note"))); err != nil {
		msg = "Not added: " + err.Error()
	}
	c.done(w, r, s, "/reports", msg)
}

func (c *Console) reportUnsuppress(w http.ResponseWriter, r *http.Request, s *session) {
	rep := c.reporter()
	if rep == nil {
		c.renderError(w, r, s, http.StatusNotFound, "TLS reporting is off on this node.")
		return
	}
	entry := r.PostForm.Get("entry")
	msg := fmt.Sprintf("%s removed from the suppression list.", entry)
	if err := rep.Unsuppress(r.Context(), entry); err != nil {
		msg = "Not removed: " + err.Error()
	}
	c.done(w, r, s, "/reports", msg)
}

// ---- settings ----

type settingsData struct {
	Entries    []settings.Entry
	Changes    []settings.Change
	Generation int
	Levels     []string
}

func tlsLevels() []string { return []string{"none", "opportunistic", "required", "required-verify"} }

func (c *Console) settingsPage(w http.ResponseWriter, r *http.Request, s *session) {
	entries, err := c.opts.Settings.List(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	changes, err := c.opts.Settings.Diff(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "settings", "Settings", settingsData{
		Entries: entries, Changes: changes, Generation: c.opts.Settings.Current().Generation, Levels: tlsLevels(),
	})
}

func (c *Console) settingsSet(w http.ResponseWriter, r *http.Request, s *session) {
	key := strings.TrimSpace(r.PostForm.Get("key"))
	if dom := strings.TrimSpace(r.PostForm.Get("domain")); dom != "" && key == "" {
		key = settings.DomainPrefix + dom + ".TLS"
	}
	value := strings.TrimSpace(r.PostForm.Get("value"))
	if !c.confirmLowering(w, r, s, key, value, false) {
		return
	}
	msg := fmt.Sprintf("Staged %s = %s. Review and commit to put it in force.", key, value)
	if err := c.opts.Settings.Set(r.Context(), key, value); err != nil {
		msg = "Not staged: " + err.Error()
	} else {
		c.log.Info("console: setting staged", "key", key, "ip", remoteIP(r))
	}
	c.done(w, r, s, "/settings", msg)
}

func (c *Console) settingsUnset(w http.ResponseWriter, r *http.Request, s *session) {
	key := strings.TrimSpace(r.PostForm.Get("key"))
	if !c.confirmLowering(w, r, s, key, "", true) {
		return
	}
	msg := fmt.Sprintf("Staged the removal of %s (back to its default). Review and commit to put it in force.", key)
	if err := c.opts.Settings.Unset(r.Context(), key); err != nil {
		msg = "Not staged: " + err.Error()
	} else {
		c.log.Info("console: setting unset staged", "key", key, "ip", remoteIP(r))
	}
	c.done(w, r, s, "/settings", msg)
}

type reviewData struct {
	Changes    []settings.Change
	Generation int
}

func (c *Console) settingsReview(w http.ResponseWriter, r *http.Request, s *session) {
	changes, err := c.opts.Settings.Diff(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "review", "Review staged settings", reviewData{Changes: changes, Generation: c.opts.Settings.Current().Generation})
}

const consoleAuthor = "console"

func (c *Console) settingsCommit(w http.ResponseWriter, r *http.Request, s *session) {
	note := strings.TrimSpace(r.PostForm.Get("note"))
	if note == "" {
		c.done(w, r, s, "/settings/review", "Not committed: write a note saying why.")
		return
	}
	snap, err := c.opts.Settings.Commit(r.Context(), note, consoleAuthor)
	if err != nil {
		if !errors.Is(err, settings.ErrNoChanges) && !errors.Is(err, settings.ErrRefused) {
			c.log.Error("console: settings commit", "err", err)
		}
		c.done(w, r, s, "/settings/review", "Not committed: "+err.Error())
		return
	}
	c.log.Info("console: settings committed", "generation", snap.Generation, "ip", remoteIP(r))
	c.done(w, r, s, "/settings/history", fmt.Sprintf("Committed generation %d; it is in force now.", snap.Generation))
}

func (c *Console) settingsDiscard(w http.ResponseWriter, r *http.Request, s *session) {
	msg := "Staged changes discarded."
	if err := c.opts.Settings.Discard(r.Context()); err != nil {
		msg = "Not discarded: " + err.Error()
	}
	c.done(w, r, s, "/settings", msg)
}

type historyRow struct {
	settings.Generation
	Current bool
	// InForce: the generation's settings are those in force (rolling back to it changes nothing).
	InForce bool
	Changes []settings.Change
}

type historyData struct {
	Rows []historyRow
	// Staged are the staged changes a rollback would have to discard.
	Staged []settings.Change
}

// genDiff is what changed from generation old to generation new.
func genDiff(old, new map[string]string) []settings.Change {
	var out []settings.Change
	for k, v := range new {
		ov, ok := old[k]
		if !ok || ov != v {
			out = append(out, settings.Change{Key: k, Old: ov, OldSet: ok, New: v, NewSet: true})
		}
	}
	for k, ov := range old {
		if _, ok := new[k]; !ok {
			out = append(out, settings.Change{Key: k, Old: ov, OldSet: true})
		}
	}
	slices.SortFunc(out, func(a, b settings.Change) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func (c *Console) settingsHistory(w http.ResponseWriter, r *http.Request, s *session) {
	hist, err := c.opts.Settings.History(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var d historyData
	if d.Staged, err = c.opts.Settings.Diff(r.Context()); err != nil {
		c.fail(w, r, s, err)
		return
	}
	for i, g := range hist {
		row := historyRow{Generation: g, Current: i == 0, InForce: maps.Equal(g.Values, hist[0].Values)}
		var prev map[string]string
		if i+1 < len(hist) {
			prev = hist[i+1].Values
		}
		row.Changes = genDiff(prev, g.Values)
		d.Rows = append(d.Rows, row)
	}
	c.render(w, r, s, http.StatusOK, "history", "Settings history", d)
}

func (c *Console) settingsRollback(w http.ResponseWriter, r *http.Request, s *session) {
	gen, err := strconv.Atoi(r.PostForm.Get("generation"))
	if err != nil || gen < 1 {
		c.renderError(w, r, s, http.StatusBadRequest, "invalid generation")
		return
	}
	staged := settings.RefuseStaged
	if r.PostForm.Get("discard") == "staged" {
		staged = settings.DiscardStaged
	}
	res, err := c.opts.Settings.Rollback(r.Context(), gen, strings.TrimSpace(r.PostForm.Get("note")), consoleAuthor, staged)
	if err != nil {
		if !errors.Is(err, settings.ErrNoGeneration) && !errors.Is(err, settings.ErrStaged) && !errors.Is(err, settings.ErrRefused) {
			c.log.Error("console: settings rollback", "err", err)
		}
		c.done(w, r, s, "/settings/history", "Not rolled back: "+err.Error())
		return
	}
	discarded := ""
	if n := len(res.Discarded); n > 0 {
		discarded = fmt.Sprintf(" Discarded %d staged change(s).", n)
	}
	if res.InForce {
		c.done(w, r, s, "/settings/history", fmt.Sprintf("Generation %d has the settings in force (generation %d): nothing to roll back.%s", gen, res.Generation, discarded))
		return
	}
	c.log.Info("console: settings rolled back", "to", gen, "generation", res.Generation, "discarded", len(res.Discarded), "ip", remoteIP(r))
	c.done(w, r, s, "/settings/history", fmt.Sprintf("Rolled back to generation %d as generation %d; it is in force now.%s", gen, res.Generation, discarded))
}

// ---- account ----

type accountData struct {
	MinLength int
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, s, http.StatusOK, "account", "Account", accountData{MinLength: MinPasswordLength})
}

func (c *Console) accountPassword(w http.ResponseWriter, r *http.Request, s *session) {
	now, ip := c.now(), remoteIP(r)
	if _, blocked := c.limiter.blocked(ip, now); blocked {
		c.done(w, r, s, "/account", "Too many wrong passwords from this address; try again later.")
		return
	}
	ok, err := checkPassword(c.opts.PasswordFile, r.PostForm.Get("current"))
	if err != nil {
		c.log.Error("console: password change", "err", err)
		c.done(w, r, s, "/account", "The password file cannot be read; see the server log.")
		return
	}
	if !ok {
		c.limiter.fail(ip, now)
		c.done(w, r, s, "/account", "Not changed: the current password is wrong.")
		return
	}
	pw, again := r.PostForm.Get("new"), r.PostForm.Get("confirm")
	switch {
	case len([]rune(pw)) < MinPasswordLength:
		c.done(w, r, s, "/account", fmt.Sprintf("Not changed: the new password needs at least %d characters.", MinPasswordLength))
		return
	case pw != again:
		c.done(w, r, s, "/account", "Not changed: the two new passwords differ.")
		return
	}
	if err := WritePassword(c.opts.PasswordFile, pw, c.opts.PasswordIterations); err != nil {
		c.log.Error("console: password change", "err", err)
		c.done(w, r, s, "/account", "Not changed: the password file cannot be written; see the server log.")
		return
	}
	c.sessions.removeOthers(s.id)
	c.log.Info("console: password changed; other sessions ended", "ip", ip)
	c.done(w, r, s, "/account", "Password changed. Other sessions were logged out.")
}
