package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/tlsreport"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// ReportsAPI is what the API needs of the TLS report sender; *tlsreport.Reporter implements it.
type ReportsAPI interface {
	Pending(ctx context.Context) ([]tlsreport.PendingSummary, error)
	Preview(ctx context.Context, domain string, day time.Time) (*tlsrpt.Report, error)
	SendDay(ctx context.Context, day time.Time) (tlsreport.SendResult, error)
	SendPartialDay(ctx context.Context, day time.Time) (tlsreport.SendResult, error)
	Sent(ctx context.Context) ([]tlsreport.SentReport, error)
	Suppress(ctx context.Context, entry, note string) error
	Unsuppress(ctx context.Context, entry string) error
	Suppressions(ctx context.Context) ([]tlsreport.Suppression, error)
}

// ReportsOff is the error answer (409) of the TLS report endpoints while TLS reporting is off.
const ReportsOff = "TLS reporting is off (Controller.EnableTLSRPT=false)"

// DayFormat is the form of a UTC day in the API: "2006-01-02".
const DayFormat = "2006-01-02"

func (s *Server) tlsrptRoutes() {
	m := s.mux
	m.HandleFunc("GET /api/v1/tlsrpt/lookup/{domain}", s.tlsrptLookup)
	m.HandleFunc("GET /api/v1/tlsrpt/pending", s.withReports(s.tlsrptPending))
	m.HandleFunc("GET /api/v1/tlsrpt/preview/{domain}", s.withReports(s.tlsrptPreview))
	m.HandleFunc("POST /api/v1/tlsrpt/send", s.withReports(s.tlsrptSend))
	m.HandleFunc("GET /api/v1/tlsrpt/sent", s.withReports(s.tlsrptSent))
	m.HandleFunc("GET /api/v1/tlsrpt/suppressions", s.withReports(s.tlsrptSuppressions))
	m.HandleFunc("POST /api/v1/tlsrpt/suppressions", s.withReports(s.tlsrptSuppress))
	m.HandleFunc("DELETE /api/v1/tlsrpt/suppressions/{entry}", s.withReports(s.tlsrptUnsuppress))
}

// withReports hands h the report sender in force: 501 when the node has none at all, 409 while TLS
// reporting is off. The sender is asked for on every request because the daemon rebuilds it when the
// settings change.
func (s *Server) withReports(h func(http.ResponseWriter, *http.Request, ReportsAPI)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Reports == nil {
			writeError(w, http.StatusNotImplemented, "TLS reports are not available on this node")
			return
		}
		rep := s.opts.Reports()
		// A nil *tlsreport.Reporter in the interface (the daemon's "off") is off too.
		if p, ok := rep.(*tlsreport.Reporter); rep == nil || ok && p == nil {
			writeError(w, http.StatusConflict, ReportsOff)
			return
		}
		h(w, r, rep)
	}
}

// tlsrptLookup answers the live _smtp._tls record of a domain. It does not need the report sender, so it
// works while reporting is off. A domain without a usable record is a 200 whose Valid is false: the lookup
// itself worked. A DNS failure is a 502.
func (s *Server) tlsrptLookup(w http.ResponseWriter, r *http.Request) {
	if s.opts.LookupTLSRPT == nil {
		writeError(w, http.StatusNotImplemented, "TLSRPT lookup is not available on this node")
		return
	}
	d, err := domainParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := TLSRPTLookup{Domain: d.String(), Name: "_smtp._tls." + d.String(), TXT: []string{}, RUA: []string{}}
	txts, err := s.opts.LookupTLSRPT(r.Context(), d.String())
	switch {
	case errors.Is(err, dnsx.ErrNotFound):
		err = fmt.Errorf("%w: %s: no such name", tlsrpt.ErrNoRecord, out.Name)
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		out.TXT = append(out.TXT, txts...)
		var rec tlsrpt.Record
		// RFC 8460 Section 3: exactly one TXT record beginning with "v=TLSRPTv1;", parsed strictly.
		if rec, err = tlsrpt.SelectRecord(txts); err == nil {
			out.Valid = true
			for _, u := range rec.RUA {
				out.RUA = append(out.RUA, u.String())
			}
			out.Ignored = rec.Ignored
		}
	}
	if err != nil {
		out.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) tlsrptPending(w http.ResponseWriter, r *http.Request, rep ReportsAPI) {
	list, err := rep.Pending(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]PendingReport, 0, len(list))
	for _, p := range list {
		out = append(out, PendingReport{Day: p.Day.UTC().Format(DayFormat), Domain: p.Domain, Policies: p.Policies,
			Successful: p.Successful, Failed: p.Failed, ReportID: p.ReportID})
	}
	writeJSON(w, http.StatusOK, out)
}

// parseDay parses a UTC day "YYYY-MM-DD".
func parseDay(v string) (time.Time, error) {
	t, err := time.Parse(DayFormat, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid day %q: want YYYY-MM-DD", v)
	}
	return t, nil
}

// tlsrptPreview answers the report as RFC 8460 JSON, exactly as it would be sent now.
func (s *Server) tlsrptPreview(w http.ResponseWriter, r *http.Request, rep ReportsAPI) {
	d, err := domainParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	day := tlsreport.Day(s.now())
	for key, vals := range r.URL.Query() {
		if key != "day" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q (known: day)", key))
			return
		}
		if len(vals) != 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q given %d times", key, len(vals)))
			return
		}
		if vals[0] == "" {
			continue
		}
		if day, err = parseDay(vals[0]); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	report, err := rep.Preview(r.Context(), d.String(), day)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := report.Marshal()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(append(b, '\n'))
}

// SendRequest is the body of POST /api/v1/tlsrpt/send: exactly one of Day (a day that is over) and Today
// (the current partial day; its later sessions are then never reported).
type SendRequest struct {
	Day   string `json:"day,omitempty"`
	Today bool   `json:"today,omitempty"`
}

func (s *Server) tlsrptSend(w http.ResponseWriter, r *http.Request, rep ReportsAPI) {
	var req SendRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if (req.Day == "") == !req.Today {
		writeError(w, http.StatusBadRequest, `request body: give either "day" (YYYY-MM-DD) or "today": true`)
		return
	}
	var res tlsreport.SendResult
	var err error
	if req.Today {
		res, err = rep.SendPartialDay(r.Context(), s.now())
	} else {
		var day time.Time
		if day, err = parseDay(req.Day); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		res, err = rep.SendDay(r.Context(), day)
	}
	if err != nil {
		if errors.Is(err, tlsreport.ErrDayNotOver) {
			err = fmt.Errorf("%w (send the current day with \"today\": true)", err)
		}
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: TLS reports sent", "day", res.Day.Format(DayFormat), "partial", req.Today, "domains", len(res.Domains), "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, sendResultDTO(res))
}

func (s *Server) tlsrptSent(w http.ResponseWriter, r *http.Request, rep ReportsAPI) {
	list, err := rep.Sent(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]SentReport, 0, len(list))
	for _, sr := range list {
		out = append(out, sentReportDTO(sr))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) tlsrptSuppressions(w http.ResponseWriter, r *http.Request, rep ReportsAPI) {
	list, err := rep.Suppressions(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]Suppression, 0, len(list))
	for _, e := range list {
		out = append(out, Suppression{Entry: e.Entry, Note: e.Note, Added: utc(e.Added)})
	}
	writeJSON(w, http.StatusOK, out)
}

// suppressionEntry checks an entry the way the suppression list stores it: lower case, without "mailto:".
func suppressionEntry(e string) (string, error) {
	n := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(e)), "mailto:")
	if n == "" || strings.ContainsAny(n, " \t\r\n") {
		return "", fmt.Errorf("invalid suppression entry %q: want a mail address, a domain or an https URL", e)
	}
	return n, nil
}

// SuppressRequest is the body of POST /api/v1/tlsrpt/suppressions.
type SuppressRequest struct {
	// Entry is a mail address, a domain (all its addresses and https hosts) or an https URL.
	Entry string `json:"entry"`
	Note  string `json:"note,omitempty"`
}

func (s *Server) tlsrptSuppress(w http.ResponseWriter, r *http.Request, rep ReportsAPI) {
	var req SuppressRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	e, err := suppressionEntry(req.Entry)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if strings.ContainsAny(req.Note, "\r\n") {
		writeError(w, http.StatusBadRequest, `request body: "note" must be one line`)
		return
	}
	if err := rep.Suppress(r.Context(), e, req.Note); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: TLS report destination suppressed", "entry", e, "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, ActionResult{Action: "suppress", Entry: e})
}

func (s *Server) tlsrptUnsuppress(w http.ResponseWriter, r *http.Request, rep ReportsAPI) {
	e, err := suppressionEntry(r.PathValue("entry"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The sender removes silently; say so when there was nothing to remove, as a typo would.
	list, err := rep.Suppressions(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	found := false
	for _, x := range list {
		found = found || x.Entry == e
	}
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%q is not on the suppression list", e))
		return
	}
	if err := rep.Unsuppress(r.Context(), e); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: TLS report destination unsuppressed", "entry", e, "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, ActionResult{Action: "unsuppress", Entry: e})
}

// The report sender satisfies the interface.
var _ ReportsAPI = (*tlsreport.Reporter)(nil)
