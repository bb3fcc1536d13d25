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

// sendLease is how long a claimed delivery stays claimed; a crashed attempt is retried after it.
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
		if errors.Is(err, errClaimed) {
			return "already-handled", "", nil
		}
		return "", "", err
	}
	log.Info("tlsreport: sending report", "destinations", len(rows))
	if _, err := r.retryDue(ctx, c, p.Report.ReportID); err != nil {
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

var errClaimed = errors.New("tlsreport: report already handled")

// markReport moves a report out of "built", in one transaction with its delivery rows. It fails with
// errClaimed when another SendDay (possibly on another node) got there first.
func (r *Reporter) markReport(ctx context.Context, p Pending, status, detail string, cl *claim) error {
	tx, err := r.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tlsreport: mark report: %w", err)
	}
	defer tx.Rollback()
	now := r.now()
	var gz []byte
	if cl != nil {
		gz = cl.gz
	}
	res, err := tx.ExecContext(ctx, `UPDATE tlsreport_reports SET status = ?, detail = ?, report_gz = ?, updated = ?
		WHERE day = ? AND policy_domain = ? AND status = ?`,
		status, detail, gz, now.Format(timeFormat), p.Day.Format(dayFormat), p.Domain, reportBuilt)
	if err != nil {
		return fmt.Errorf("tlsreport: mark report: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errClaimed
	}
	if cl != nil {
		for _, d := range cl.rows {
			next := now.Format(timeFormat)
			if d.status == StatusSuppressed {
				next = ""
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO tlsreport_deliveries
				(day, policy_domain, report_id, destination, status, next_attempt) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT DO NOTHING`,
				p.Day.Format(dayFormat), p.Domain, p.Report.ReportID, d.dest, d.status, next); err != nil {
				return fmt.Errorf("tlsreport: mark report: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("tlsreport: mark report: %w", err)
	}
	return nil
}

// RetryDue attempts every delivery whose next attempt is due (first attempts included) and returns how many
// it attempted. Run calls it periodically.
func (r *Reporter) RetryDue(ctx context.Context) (int, error) {
	c, err := r.init(ctx)
	if err != nil {
		return 0, err
	}
	return r.retryDue(ctx, c, "")
}

type dueDelivery struct {
	id                    int64
	day, domain, reportID string
	dest, firstAttempt    string
	attempts              int
	uniqueID              string
	gz                    []byte
}

func (r *Reporter) retryDue(ctx context.Context, c config, reportID string) (int, error) {
	now := r.now()
	q := `SELECT d.id, d.day, d.policy_domain, d.report_id, d.destination, d.first_attempt, d.attempts,
		p.unique_id, p.report_gz
		FROM tlsreport_deliveries d JOIN tlsreport_reports p ON p.report_id = d.report_id
		WHERE d.status IN ('pending', 'retrying', 'sending') AND d.next_attempt != '' AND d.next_attempt <= ?`
	args := []any{now.Format(timeFormat)}
	if reportID != "" {
		q += ` AND d.report_id = ?`
		args = append(args, reportID)
	}
	q += ` ORDER BY d.next_attempt, d.id`
	rows, err := r.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("tlsreport: due deliveries: %w", err)
	}
	var due []dueDelivery
	for rows.Next() {
		var d dueDelivery
		if err := rows.Scan(&d.id, &d.day, &d.domain, &d.reportID, &d.dest, &d.firstAttempt, &d.attempts, &d.uniqueID, &d.gz); err != nil {
			rows.Close()
			return 0, fmt.Errorf("tlsreport: due deliveries: %w", err)
		}
		due = append(due, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("tlsreport: due deliveries: %w", err)
	}
	n := 0
	for _, d := range due {
		// Claim the delivery so that a concurrent RetryDue (another node) does not send it too.
		res, err := r.DB.ExecContext(ctx, `UPDATE tlsreport_deliveries SET status = 'sending', next_attempt = ?
			WHERE id = ? AND status IN ('pending', 'retrying', 'sending') AND next_attempt != '' AND next_attempt <= ?`,
			now.Add(sendLease).Format(timeFormat), d.id, now.Format(timeFormat))
		if err != nil {
			return n, fmt.Errorf("tlsreport: claim delivery: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			continue
		}
		n++
		msgID, status, aerr := r.attempt(ctx, c, d)
		if err := r.recordAttempt(ctx, c, d, msgID, status, aerr); err != nil {
			return n, err
		}
	}
	return n, nil
}

// attempt makes one delivery attempt. It returns the new status (delivered or queued) or an error.
func (r *Reporter) attempt(ctx context.Context, c config, d dueDelivery) (msgID, status string, err error) {
	day, err := time.Parse(dayFormat, d.day)
	if err != nil {
		return "", "", fmt.Errorf("stored day %q: %w", d.day, err)
	}
	m := reportMeta{
		domain:    d.domain,
		submitter: c.submitter,
		reportID:  d.reportID,
		start:     day,
		end:       day.AddDate(0, 0, 1),
		uniqueID:  d.uniqueID,
	}
	if addr, ok := strings.CutPrefix(d.dest, "mailto:"); ok {
		msgID, err := r.sendMail(ctx, c, m, addr, d.gz)
		if err != nil {
			return "", "", err
		}
		return msgID, StatusQueued, nil
	}
	if err := r.post(ctx, d.dest, d.gz); err != nil {
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
func (r *Reporter) recordAttempt(ctx context.Context, c config, d dueDelivery, msgID, status string, aerr error) error {
	now := r.now()
	first := d.firstAttempt
	if first == "" {
		first = now.Format(timeFormat)
	}
	attempts := d.attempts + 1
	next, lastErr := "", ""
	if aerr != nil {
		lastErr = aerr.Error()
		firstT, err := time.Parse(timeFormat, first)
		if err != nil {
			firstT = now
		}
		delay := c.backoff << min(attempts-1, 20)
		at := now.Add(delay)
		if deadline := firstT.Add(c.retryFor); at.After(deadline) {
			// One last attempt at the deadline, unless it has passed.
			at = deadline
		}
		if !at.After(now) {
			status = StatusFailed
		} else {
			status = StatusRetrying
			next = at.Format(timeFormat)
		}
		r.log().Warn("tlsreport: report delivery failed", "domain", d.domain, "report_id", d.reportID,
			"destination", d.dest, "attempt", attempts, "outcome", status, "err", aerr)
	} else {
		r.log().Info("tlsreport: report delivered", "domain", d.domain, "report_id", d.reportID,
			"destination", d.dest, "attempt", attempts, "outcome", status, "msg_id", msgID)
	}
	_, err := r.DB.ExecContext(ctx, `UPDATE tlsreport_deliveries SET status = ?, attempts = ?, first_attempt = ?,
		last_attempt = ?, next_attempt = ?, msg_id = ?, last_error = ? WHERE id = ?`,
		status, attempts, first, now.Format(timeFormat), next, msgID, lastErr, d.id)
	if err != nil {
		return fmt.Errorf("tlsreport: record attempt: %w", err)
	}
	return nil
}

// Sent returns the report log, oldest first.
func (r *Reporter) Sent(ctx context.Context) ([]SentReport, error) {
	if _, err := r.init(ctx); err != nil {
		return nil, err
	}
	return r.queryDeliveries(ctx, ``)
}

func (r *Reporter) deliveriesOf(ctx context.Context, reportID string) ([]SentReport, error) {
	return r.queryDeliveries(ctx, ` WHERE report_id = ?`, reportID)
}

func (r *Reporter) queryDeliveries(ctx context.Context, where string, args ...any) ([]SentReport, error) {
	rows, err := r.DB.QueryContext(ctx, `SELECT day, policy_domain, report_id, destination, status, attempts,
		first_attempt, last_attempt, next_attempt, msg_id, last_error FROM tlsreport_deliveries`+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("tlsreport: report log: %w", err)
	}
	defer rows.Close()
	var out []SentReport
	for rows.Next() {
		var s SentReport
		var day, first, last, next string
		if err := rows.Scan(&day, &s.Domain, &s.ReportID, &s.Destination, &s.Status, &s.Attempts,
			&first, &last, &next, &s.MsgID, &s.LastError); err != nil {
			return nil, fmt.Errorf("tlsreport: report log: %w", err)
		}
		s.Day, _ = time.Parse(dayFormat, day)
		s.FirstAttempt = parseTime(first)
		s.LastAttempt = parseTime(last)
		s.NextAttempt = parseTime(next)
		out = append(out, s)
	}
	return out, rows.Err()
}

func parseTime(s string) time.Time {
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
