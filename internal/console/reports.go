package console

import (
	"encoding/json"
	"fmt"
	"github.com/mxgate/mxgate/internal/admin"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/tlsreport"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

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

func (c *Console) reporter() ReportsAPI {
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
	// Report is the same report, shown as a table beside its JSON.
	Report *tlsrpt.Report
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
	c.render(w, r, s, http.StatusOK, "preview", "TLS report preview", previewData{Domain: dom.String(), Day: dayStr, JSON: string(raw), Report: rp})
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
