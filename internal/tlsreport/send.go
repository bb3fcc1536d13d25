package tlsreport

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Report statuses (tlsreport_reports.status).
const (
	reportBuilt    = "built"
	reportSent     = "sent"
	reportNoRecord = "no-record"
	reportSkipped  = "skipped"
)

// Delivery statuses, as in SentReport.Status.
const (
	// StatusPending: not attempted yet.
	StatusPending = "pending"
	// StatusSending: claimed by an attempt in progress (or one that crashed; retried after a lease).
	StatusSending = "sending"
	// StatusDelivered: an https endpoint answered 2xx.
	StatusDelivered = "delivered"
	// StatusQueued: the mail was accepted by mxgate's queue, which delivers it from here.
	StatusQueued = "queued"
	// StatusRetrying: the last attempt failed; NextAttempt says when the next one is due.
	StatusRetrying = "retrying"
	// StatusFailed: retries gave up (RFC 8460 Section 5.5).
	StatusFailed = "failed"
	// StatusSuppressed: the destination is on the suppression list and got nothing.
	StatusSuppressed = "suppressed"
)

// ErrDayNotOver is returned by SendDay for a UTC day that has not ended yet.
var ErrDayNotOver = errors.New("tlsreport: the day is not over yet")

// sendLease is how long a claimed delivery stays claimed unless Reporter.SendLease says otherwise; a
// crashed attempt is retried after it.
const sendLease = 10 * time.Minute

// SentReport is one row of the report log: one report to one destination.
type SentReport struct {
	Day          time.Time
	Domain       string
	ReportID     string
	Destination  string // "mailto:addr" or the https URL
	Status       string
	Attempts     int
	FirstAttempt time.Time
	LastAttempt  time.Time
	NextAttempt  time.Time
	// MsgID is the queue's id of the report mail.
	MsgID     string
	LastError string
}

// DomainResult is what SendDay did for one Policy Domain.
type DomainResult struct {
	Domain   string
	ReportID string
	// Status is "sent", "no-record" (no valid TLSRPT record: nothing sent, RPT-8), "skipped" (OnlyFailures and
	// no failures), "already-handled" (an earlier SendDay handled it) or "error" (temporary DNS failure:
	// SendDay tries again next time).
	Status     string
	Detail     string
	Deliveries []SentReport
}

// SendResult is what SendDay did.
type SendResult struct {
	Day     time.Time
	Domains []DomainResult
}

// SendDay sends the reports of day's UTC day: for each Policy Domain with recorded sessions it looks up
// _smtp._tls.<domain> and sends the gzipped report to each usable rua destination (at most MaxDestinations).
// It is idempotent: a report is handled once, and later calls only report "already-handled".
func (r *Reporter) SendDay(ctx context.Context, day time.Time) (SendResult, error) {
	return r.sendDay(ctx, day, false)
}

// SendPartialDay sends the reports of a day that has not ended yet (`mxgate tlsrpt send --today`, the
// demo). The day is then handled: sessions recorded later that day are never reported.
func (r *Reporter) SendPartialDay(ctx context.Context, day time.Time) (SendResult, error) {
	return r.sendDay(ctx, day, true)
}

func (r *Reporter) sendDay(ctx context.Context, day time.Time, partial bool) (SendResult, error) {
	c, err := r.init(ctx)
	if err != nil {
		return SendResult{}, err
	}
	day = Day(day)
	res := SendResult{Day: day}
	if !partial && r.now().Before(day.AddDate(0, 0, 1)) {
		// RFC 8460 Section 4.1: a report covers a whole day; sending early would lose the rest of it.
		return res, fmt.Errorf("%w: %s", ErrDayNotOver, day.Format(dayFormat))
	}
	pend, err := r.build(ctx, c, day, "")
	if err != nil {
		return res, err
	}
	for _, p := range pend {
		dr := DomainResult{Domain: p.Domain, ReportID: p.Report.ReportID}
		if p.Status != reportBuilt {
			dr.Status = "already-handled"
			res.Domains = append(res.Domains, dr)
			continue
		}
		dr.Status, dr.Detail, err = r.sendReport(ctx, c, p)
		if err != nil {
			return res, err
		}
		if dr.Status == reportSent {
			if dr.Deliveries, err = r.deliveriesOf(ctx, p.Report.ReportID); err != nil {
				return res, err
			}
		}
		res.Domains = append(res.Domains, dr)
	}
	return res, nil
}

// sendReport looks up the domain's TLSRPT record, claims the report, and attempts each destination once.
func (r *Reporter) sendReport(ctx context.Context, c config, p Pending) (status, detail string, err error) {
	log := r.log().With("domain", p.Domain, "report_id", p.Report.ReportID)
	if r.OnlyFailures && p.Failures() == 0 {
		return reportSkipped, "no failures", r.markReport(ctx, p, reportSkipped, "no failures", nil)
	}
	if r.Resolver == nil {
		return "", "", fmt.Errorf("%w: Resolver: not set", ErrConfig)
	}
	// RFC 8460 Section 3: the policy is a TXT record at _smtp._tls.<Policy Domain> (RPT-1).
	name := "_smtp._tls." + p.Domain
	txts, _, lerr := r.Resolver.LookupTXT(ctx, name)
	var rec tlsrpt.Record
	switch {
	case errors.Is(lerr, dnsx.ErrNotFound):
		rec, lerr = tlsrpt.Record{}, fmt.Errorf("%w: %s: NXDOMAIN", tlsrpt.ErrNoRecord, name)
	case lerr != nil:
		// Temporary unless proven permanent: try again on the next SendDay.
		log.Warn("tlsreport: TLSRPT record lookup failed", "err", lerr)
		return "error", lerr.Error(), nil
	default:
		// RFC 8460 Section 3: exactly one record beginning with "v=TLSRPTv1;" (RPT-3).
		rec, lerr = tlsrpt.SelectRecord(txts)
	}
	if lerr != nil {
		// RFC 8460 Section 3 (RPT-8): a domain without a valid record gets no report.
		log.Info("tlsreport: no report sent: no valid TLSRPT record", "err", lerr)
		return reportNoRecord, lerr.Error(), r.markReport(ctx, p, reportNoRecord, lerr.Error(), nil)
	}
	dests := rec.RUA
	if len(dests) > c.maxDest {
		dests = dests[:c.maxDest]
	}
	js, err := p.Report.Marshal()
	if err != nil {
		return "", "", err
	}
	// RFC 8460 Section 5.2: reports SHOULD be gzip-compressed, for mail and HTTPS alike (RPT-26).
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(js); err != nil {
		return "", "", fmt.Errorf("tlsreport: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", "", fmt.Errorf("tlsreport: gzip: %w", err)
	}
	supp, err := r.suppressionSet(ctx)
	if err != nil {
		return "", "", err
	}
	var rows []deliveryRow
	for _, u := range dests {
		status := StatusPending
		if supp.match(u) || (r.Suppressed != nil && r.Suppressed(u.String())) {
			status = StatusSuppressed
		}
		rows = append(rows, deliveryRow{dest: u.String(), status: status})
	}
	detail = strings.Join(rec.Ignored, ", ")
	if detail != "" {
		detail = "ignored rua: " + detail
	}
	if err := r.markReport(ctx, p, reportSent, detail, &claim{gz: gz.Bytes(), rows: rows}); err != nil {
		if errors.Is(err, ErrClaimed) {
			return "already-handled", "", nil
		}
		return "", "", err
	}
	log.Info("tlsreport: sending report", "destinations", len(rows))
	if _, err := r.retryDue(ctx, c, r.st, p.Report.ReportID); err != nil {
		return "", "", err
	}
	return reportSent, detail, nil
}

type deliveryRow struct {
	dest, status string
}

type claim struct {
	gz   []byte
	rows []deliveryRow
}

// markReport moves a report out of "built", in one transaction with its delivery rows. It fails with
// ErrClaimed when another SendDay (possibly on another node) got there first.
func (r *Reporter) markReport(ctx context.Context, p Pending, status, detail string, cl *claim) error {
	m := ReportMark{Day: p.Day.Format(dayFormat), Domain: p.Domain, ReportID: p.Report.ReportID, Status: status,
		Detail: detail, Now: r.now()}
	if cl != nil {
		m.Gz = cl.gz
		for _, d := range cl.rows {
			m.Deliveries = append(m.Deliveries, NewDelivery{Destination: d.dest, Status: d.status})
		}
	}
	return r.st.MarkReport(ctx, m)
}

// RetryDue attempts every delivery whose next attempt is due (first attempts included) and returns how many
// it attempted. Run calls it periodically. In cluster mode it also attempts the due deliveries of the node's
// own store (Local), those started before the node joined the cluster.
func (r *Reporter) RetryDue(ctx context.Context) (int, error) {
	c, err := r.init(ctx)
	if err != nil {
		return 0, err
	}
	n, err := r.retryDue(ctx, c, r.st, "")
	if r.Local != nil {
		m, lerr := r.retryDue(ctx, c, r.Local, "")
		if lerr != nil {
			lerr = fmt.Errorf("tlsreport: deliveries started before this node joined the cluster: %w", lerr)
		}
		n, err = n+m, errors.Join(err, lerr)
	}
	return n, err
}

// retryDue attempts the due deliveries of st (of reportID only, if not empty).
func (r *Reporter) retryDue(ctx context.Context, c config, st Store, reportID string) (int, error) {
	due, err := st.DueDeliveries(ctx, r.now(), reportID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range due {
		// Lease the delivery so that a concurrent RetryDue (another node) does not send it too; if this
		// sender dies before recording the outcome, another one takes the delivery over once the lease has
		// run out (the receiver may then get the report twice, with the same report-id, and discard one).
		owner, err := r.random(8)
		if err != nil {
			return n, err
		}
		// The clock is read for each claim: the attempts before this one may have taken long, and a lease
		// counted from the start of the loop could have run out already, letting another sender in.
		now := r.now()
		ok, err := st.ClaimDelivery(ctx, d.ID, owner, now, now.Add(c.lease))
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		n++
		msgID, status, aerr := r.attempt(ctx, c, d)
		if err := r.recordAttempt(ctx, c, st, d, owner, msgID, status, aerr); err != nil {
			return n, err
		}
	}
	return n, nil
}

// attempt makes one delivery attempt. It returns the new status (delivered or queued) or an error.
func (r *Reporter) attempt(ctx context.Context, c config, d DueDelivery) (msgID, status string, err error) {
	day, err := time.Parse(dayFormat, d.Day)
	if err != nil {
		return "", "", fmt.Errorf("stored day %q: %w", d.Day, err)
	}
	m := reportMeta{
		domain:    d.Domain,
		submitter: c.submitter,
		reportID:  d.ReportID,
		start:     day,
		end:       day.AddDate(0, 0, 1),
		uniqueID:  d.UniqueID,
	}
	if addr, ok := strings.CutPrefix(d.Destination, "mailto:"); ok {
		msgID, err := r.sendMail(ctx, c, m, addr, d.Gz)
		if err != nil {
			return "", "", err
		}
		return msgID, StatusQueued, nil
	}
	if err := r.post(ctx, d.Destination, d.Gz); err != nil {
		return "", "", err
	}
	return "", StatusDelivered, nil
}

// post sends the gzipped report to an https: destination (RFC 8460 Section 5.4).
func (r *Reporter) post(ctx context.Context, url string, gz []byte) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	// RFC 8460 Section 5.4: the body is the report, with its media type (Section 6.4, RPT-33).
	req.Header.Set("Content-Type", tlsrpt.MediaTypeGzip)
	resp, err := r.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	// RFC 8460 Section 5.4: a 2xx is success; anything else, redirects included (the client does not follow
	// them), is a failure to be retried (RPT-35).
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// recordAttempt stores the outcome of an attempt and schedules the next one. RFC 8460 Section 5.5: failed
// deliveries are retried with exponential back-off for up to RetryFor (24 hours) after the first attempt.
func (r *Reporter) recordAttempt(ctx context.Context, c config, st Store, d DueDelivery, owner, msgID, status string, aerr error) error {
	now := r.now()
	first := d.FirstAttempt
	if first.IsZero() {
		// As stored: whole seconds.
		first = now.Truncate(time.Second)
	}
	attempts := d.Attempts + 1
	var next time.Time
	lastErr := ""
	if aerr != nil {
		lastErr = aerr.Error()
		delay := c.backoff << min(attempts-1, 20)
		at := now.Add(delay)
		if deadline := first.Add(c.retryFor); at.After(deadline) {
			// One last attempt at the deadline, unless it has passed.
			at = deadline
		}
		if !at.After(now) {
			status = StatusFailed
		} else {
			status = StatusRetrying
			next = at
		}
		r.log().Warn("tlsreport: report delivery failed", "domain", d.Domain, "report_id", d.ReportID,
			"destination", d.Destination, "attempt", attempts, "outcome", status, "err", aerr)
	} else {
		r.log().Info("tlsreport: report delivered", "domain", d.Domain, "report_id", d.ReportID,
			"destination", d.Destination, "attempt", attempts, "outcome", status, "msg_id", msgID)
	}
	ok, err := st.RecordAttempt(ctx, Attempt{ID: d.ID, Owner: owner, Status: status, Attempts: attempts,
		FirstAttempt: first, LastAttempt: now, NextAttempt: next, MsgID: msgID, LastError: lastErr})
	if err != nil {
		return err
	}
	if !ok {
		// The lease ran out and another sender took the delivery over: its outcome is the one recorded.
		r.log().Warn("tlsreport: report delivery outcome not recorded: another sender took the delivery over after this one's lease ran out",
			"domain", d.Domain, "report_id", d.ReportID, "destination", d.Destination, "outcome", status)
	}
	return nil
}

// Sent returns the report log, oldest first.
func (r *Reporter) Sent(ctx context.Context) ([]SentReport, error) {
	if _, err := r.init(ctx); err != nil {
		return nil, err
	}
	return r.st.Deliveries(ctx, "")
}

func (r *Reporter) deliveriesOf(ctx context.Context, reportID string) ([]SentReport, error) {
	return r.st.Deliveries(ctx, reportID)
}

func parseTime(s string) time.Time {
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
