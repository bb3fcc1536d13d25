package admintest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/tlsreport"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Reports is a fake TLS report sender (admin.ReportsAPI) following the documented behaviour of
// *tlsreport.Reporter: previews come from Reports, sends move a day's pending aggregates to the report log
// as queued to "mailto:tlsrpt@<domain>". Set Err to make every method fail with it. Use NewReports.
type Reports struct {
	mu    sync.Mutex
	calls []string
	now   time.Time
	// pending aggregates and their reports, by day and domain.
	pending []tlsreport.PendingSummary
	reports map[string]*tlsrpt.Report
	sent    []tlsreport.SentReport
	supp    []tlsreport.Suppression
	Err     error
}

// NewReports returns a fake sender whose clock is now, with no data.
func NewReports(now time.Time) *Reports {
	return &Reports{now: now, reports: map[string]*tlsrpt.Report{}}
}

func reportKey(day time.Time, domain string) string {
	return tlsreport.Day(day).Format("2006-01-02") + " " + domain
}

// AddReport records rep as the aggregate of domain on day's UTC day.
func (r *Reports) AddReport(day time.Time, domain string, rep *tlsrpt.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := tlsreport.PendingSummary{Day: tlsreport.Day(day), Domain: domain, Policies: len(rep.Policies), ReportID: rep.ReportID}
	for _, p := range rep.Policies {
		ps.Successful += p.Summary.Successful
		ps.Failed += p.Summary.Failed
	}
	r.pending = append(r.pending, ps)
	r.reports[reportKey(day, domain)] = rep
}

// Calls returns the state-changing calls made so far ("send 2025-05-31", "send-partial 2025-06-01",
// "suppress entry", "unsuppress entry").
func (r *Reports) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Pending implements admin.ReportsAPI.
func (r *Reports) Pending(ctx context.Context) ([]tlsreport.PendingSummary, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pending), r.Err
}

// Preview implements admin.ReportsAPI.
func (r *Reports) Preview(ctx context.Context, domain string, day time.Time) (*tlsrpt.Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return nil, r.Err
	}
	rep, ok := r.reports[reportKey(day, domain)]
	if !ok {
		return nil, fmt.Errorf("%w for %s on %s", tlsreport.ErrNotFound, domain, tlsreport.Day(day).Format("2006-01-02"))
	}
	return rep, nil
}

// SendDay implements admin.ReportsAPI.
func (r *Reports) SendDay(ctx context.Context, day time.Time) (tlsreport.SendResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return tlsreport.SendResult{}, r.Err
	}
	day = tlsreport.Day(day)
	if r.now.Before(day.AddDate(0, 0, 1)) {
		return tlsreport.SendResult{Day: day}, fmt.Errorf("%w: %s", tlsreport.ErrDayNotOver, day.Format("2006-01-02"))
	}
	return r.send("send", day), nil
}

// SendPartialDay implements admin.ReportsAPI.
func (r *Reports) SendPartialDay(ctx context.Context, day time.Time) (tlsreport.SendResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return tlsreport.SendResult{}, r.Err
	}
	return r.send("send-partial", tlsreport.Day(day)), nil
}

func (r *Reports) send(op string, day time.Time) tlsreport.SendResult {
	r.calls = append(r.calls, op+" "+day.Format("2006-01-02"))
	res := tlsreport.SendResult{Day: day}
	r.pending = slices.DeleteFunc(r.pending, func(p tlsreport.PendingSummary) bool {
		if !p.Day.Equal(day) {
			return false
		}
		sr := tlsreport.SentReport{Day: day, Domain: p.Domain, ReportID: p.ReportID, Destination: "mailto:tlsrpt@" + p.Domain,
			Status: tlsreport.StatusQueued, Attempts: 1, FirstAttempt: r.now, LastAttempt: r.now, MsgID: "msg-" + p.Domain}
		r.sent = append(r.sent, sr)
		res.Domains = append(res.Domains, tlsreport.DomainResult{Domain: p.Domain, ReportID: p.ReportID, Status: "sent",
			Deliveries: []tlsreport.SentReport{sr}})
		return true
	})
	return res
}

// Sent implements admin.ReportsAPI.
func (r *Reports) Sent(ctx context.Context) ([]tlsreport.SentReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent), r.Err
}

// Suppress implements admin.ReportsAPI.
func (r *Reports) Suppress(ctx context.Context, entry, note string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return r.Err
	}
	e := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(entry)), "mailto:")
	r.calls = append(r.calls, "suppress "+e)
	r.supp = slices.DeleteFunc(r.supp, func(s tlsreport.Suppression) bool { return s.Entry == e })
	r.supp = append(r.supp, tlsreport.Suppression{Entry: e, Note: note, Added: r.now})
	slices.SortFunc(r.supp, func(a, b tlsreport.Suppression) int { return strings.Compare(a.Entry, b.Entry) })
	return nil
}

// Unsuppress implements admin.ReportsAPI.
func (r *Reports) Unsuppress(ctx context.Context, entry string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return r.Err
	}
	e := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(entry)), "mailto:")
	r.calls = append(r.calls, "unsuppress "+e)
	r.supp = slices.DeleteFunc(r.supp, func(s tlsreport.Suppression) bool { return s.Entry == e })
	return nil
}

// Suppressions implements admin.ReportsAPI.
func (r *Reports) Suppressions(ctx context.Context) ([]tlsreport.Suppression, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.supp), r.Err
}

// ReportsFixture returns a sender at Now with two pending aggregates: example.org yesterday (2025-05-31,
// 9 successful and 2 failed sessions under its sts policy) and example.net today (3 successful,
// no-policy-found), and one suppression entry (abuse@example.com).
func ReportsFixture() *Reports {
	now := Now()
	r := NewReports(now)
	yesterday := tlsreport.Day(now).AddDate(0, 0, -1)
	r.AddReport(yesterday, "example.org", &tlsrpt.Report{
		OrganizationName: "Corp Example",
		DateRange:        tlsrpt.DateRange{Start: yesterday, End: yesterday.Add(24*time.Hour - time.Second)},
		ContactInfo:      "postmaster@corp.example",
		ReportID:         "2025-05-31T00:00:00Z_example.org_r1",
		Policies: []tlsrpt.PolicyResults{{
			Policy: tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "example.org",
				String: []string{"version: STSv1", "mode: enforce", "mx: mx1.example.org", "max_age: 604800"},
				MXHost: []string{"mx1.example.org"}},
			Summary: tlsrpt.Summary{Successful: 9, Failed: 2},
			FailureDetails: []tlsrpt.FailureDetails{{ResultType: tlsrpt.ResultCertificateHostMismatch,
				SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx1.example.org", ReceivingIP: "198.51.100.7",
				FailedSessionCount: 2}},
		}},
	})
	today := tlsreport.Day(now)
	r.AddReport(today, "example.net", &tlsrpt.Report{
		OrganizationName: "Corp Example",
		DateRange:        tlsrpt.DateRange{Start: today, End: today.Add(24*time.Hour - time.Second)},
		ContactInfo:      "postmaster@corp.example",
		Policies: []tlsrpt.PolicyResults{{
			Policy:  tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: "example.net"},
			Summary: tlsrpt.Summary{Successful: 3},
		}},
	})
	r.supp = []tlsreport.Suppression{{Entry: "abuse@example.com", Note: "asked to stop", Added: now.Add(-24 * time.Hour)}}
	return r
}
