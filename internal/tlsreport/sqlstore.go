package tlsreport

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// sqlStore is the SQL both stores run: the SQLite schema and the PostgreSQL one have the same tables and
// columns (schema.go), and the statements below are written in the SQL both accept (store.SQL).
type sqlStore struct {
	db store.SQL
	// betweenReads, when set, runs in LoadDay between reading the policies and reading their failures.
	betweenReads func()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeFormat)
}

func (s sqlStore) addSessions(ctx context.Context, b Batch) (bool, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if b.ID != "" {
		res, err := tx.ExecContext(ctx, `INSERT INTO tlsreport_handovers (id, added) VALUES (?, ?)
			ON CONFLICT DO NOTHING`, b.ID, fmtTime(time.Now()))
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, err
		} else if n == 0 {
			return false, nil
		}
	}
	aggs := b.Aggregates
	if s.db.Dialect == store.Postgres {
		// PostgreSQL: the same order on every node, so that two nodes adding to the same rows wait for each
		// other rather than deadlock. (SQLite has one writer at a time.)
		aggs = sortedAggregates(aggs)
	}
	for _, a := range aggs {
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO tlsreport_policies
			(day, policy_domain, policy_type, policy_string, mx_host, success, failure) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (day, policy_domain, policy_type, policy_string, mx_host) DO UPDATE SET
			success = tlsreport_policies.success + excluded.success, failure = tlsreport_policies.failure + excluded.failure
			RETURNING id`,
			a.Day, a.Domain, string(a.PolicyType), a.PolicyString, a.MXHost, a.Success, a.Failure).Scan(&id)
		if err != nil {
			return false, err
		}
		fs := a.Failures
		if s.db.Dialect == store.Postgres {
			fs = sortedFailures(fs)
		}
		for _, f := range fs {
			_, err := tx.ExecContext(ctx, `INSERT INTO tlsreport_failures
				(policy_id, result_type, sending_ip, receiving_mx, receiving_helo, receiving_ip, reason_code, additional, count)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (policy_id, result_type, sending_ip, receiving_mx, receiving_helo, receiving_ip, reason_code, additional)
				DO UPDATE SET count = tlsreport_failures.count + excluded.count`,
				id, string(f.ResultType), f.SendingIP, f.ReceivingMX, f.Helo, f.ReceivingIP, f.ReasonCode, f.Additional, f.Count)
			if err != nil {
				return false, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return true, nil
}

func sortedAggregates(in []Aggregate) []Aggregate {
	type keyed struct {
		key string
		a   Aggregate
	}
	ks := make([]keyed, len(in))
	for i, a := range in {
		ks[i] = keyed{strings.Join([]string{a.Day, a.Domain, string(a.PolicyType), a.PolicyString, a.MXHost}, "\x00"), a}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	out := make([]Aggregate, len(ks))
	for i, k := range ks {
		out[i] = k.a
	}
	return out
}

func sortedFailures(in []FailureCount) []FailureCount {
	type keyed struct {
		key string
		f   FailureCount
	}
	ks := make([]keyed, len(in))
	for i, f := range in {
		ks[i] = keyed{strings.Join([]string{string(f.ResultType), f.SendingIP, f.ReceivingMX, f.Helo, f.ReceivingIP, f.ReasonCode, f.Additional}, "\x00"), f}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	out := make([]FailureCount, len(ks))
	for i, k := range ks {
		out[i] = k.f
	}
	return out
}

func (s sqlStore) hold(ctx context.Context, b Batch) error {
	if b.ID == "" {
		return errors.New("tlsreport: hold: batch without an id")
	}
	js, err := json.Marshal(b)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO tlsreport_held (id, batch, added) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`, b.ID, string(js), fmtTime(time.Now()))
	return err
}

func (s sqlStore) held(ctx context.Context) ([]Batch, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT batch FROM tlsreport_held ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Batch
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return nil, err
		}
		var b Batch
		if err := json.Unmarshal([]byte(js), &b); err != nil {
			return nil, fmt.Errorf("held batch: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (s sqlStore) release(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM tlsreport_held WHERE id = ?`, id)
	return err
}

func (s sqlStore) loadDay(ctx context.Context, day, domain string) (map[string][]tlsrpt.PolicyResults, error) {
	q := `SELECT id, policy_domain, policy_type, policy_string, mx_host, success, failure
		FROM tlsreport_policies WHERE day = ?`
	args := []any{day}
	if domain != "" {
		q += ` AND policy_domain = ?`
		args = append(args, domain)
	}
	q += ` ORDER BY policy_domain, policy_type, policy_string, mx_host`
	// One read transaction for both statements, so that the failure details are those of the summaries
	// read (flushes from other nodes go on meanwhile): a snapshot on PostgreSQL, and on SQLite the one
	// connection, held for both.
	var opts *sql.TxOptions
	if s.db.Dialect == store.Postgres {
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	type pol struct {
		id     int64
		domain string
		pr     tlsrpt.PolicyResults
	}
	var pols []pol
	idx := map[int64]int{}
	for rows.Next() {
		var p pol
		var ptype, pstring, mx string
		if err := rows.Scan(&p.id, &p.domain, &ptype, &pstring, &mx, &p.pr.Summary.Successful, &p.pr.Summary.Failed); err != nil {
			rows.Close()
			return nil, err
		}
		p.pr.Policy.Type = tlsrpt.PolicyType(ptype)
		p.pr.Policy.Domain = p.domain
		if p.pr.Policy.String, err = parseJSONArray(pstring); err != nil {
			rows.Close()
			return nil, fmt.Errorf("policy-string: %w", err)
		}
		if p.pr.Policy.MXHost, err = parseJSONArray(mx); err != nil {
			rows.Close()
			return nil, fmt.Errorf("mx-host: %w", err)
		}
		if len(p.pr.Policy.MXHost) == 0 {
			p.pr.Policy.MXHost = nil
		}
		idx[p.id] = len(pols)
		pols = append(pols, p)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if s.betweenReads != nil {
		s.betweenReads()
	}
	frows, err := tx.QueryContext(ctx, `SELECT f.policy_id, f.result_type, f.sending_ip, f.receiving_mx, f.receiving_helo,
		f.receiving_ip, f.reason_code, f.additional, f.count
		FROM tlsreport_failures f JOIN tlsreport_policies p ON p.id = f.policy_id WHERE p.day = ?
		ORDER BY f.result_type, f.receiving_mx, f.receiving_ip, f.sending_ip, f.receiving_helo, f.reason_code, f.additional`, day)
	if err != nil {
		return nil, err
	}
	defer frows.Close()
	for frows.Next() {
		var id int64
		var f tlsrpt.FailureDetails
		var rt string
		if err := frows.Scan(&id, &rt, &f.SendingMTAIP, &f.ReceivingMXHostname, &f.ReceivingMXHelo, &f.ReceivingIP,
			&f.FailureReasonCode, &f.AdditionalInfo, &f.FailedSessionCount); err != nil {
			return nil, err
		}
		f.ResultType = tlsrpt.ResultType(rt)
		if i, ok := idx[id]; ok {
			pols[i].pr.FailureDetails = append(pols[i].pr.FailureDetails, f)
		}
	}
	if err := frows.Err(); err != nil {
		return nil, err
	}
	out := map[string][]tlsrpt.PolicyResults{}
	for _, p := range pols {
		out[p.domain] = append(out[p.domain], p.pr)
	}
	return out, nil
}

func (s sqlStore) reportID(ctx context.Context, day, domain, id, uid string, now time.Time) (string, string, string, error) {
	var gotID, gotUID, status string
	err := s.db.QueryRowContext(ctx, `SELECT report_id, unique_id, status FROM tlsreport_reports
		WHERE day = ? AND policy_domain = ?`, day, domain).Scan(&gotID, &gotUID, &status)
	if err == nil {
		return gotID, gotUID, status, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", "", "", err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO tlsreport_reports (day, policy_domain, report_id, unique_id, status, updated)
		VALUES (?, ?, ?, ?, 'built', ?) ON CONFLICT DO NOTHING`, day, domain, id, uid, fmtTime(now)); err != nil {
		return "", "", "", err
	}
	err = s.db.QueryRowContext(ctx, `SELECT report_id, unique_id, status FROM tlsreport_reports
		WHERE day = ? AND policy_domain = ?`, day, domain).Scan(&gotID, &gotUID, &status)
	return gotID, gotUID, status, err
}

func (s sqlStore) markReport(ctx context.Context, m ReportMark) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := fmtTime(m.Now)
	res, err := tx.ExecContext(ctx, `UPDATE tlsreport_reports SET status = ?, detail = ?, report_gz = ?, updated = ?
		WHERE day = ? AND policy_domain = ? AND status = ?`,
		m.Status, m.Detail, m.Gz, now, m.Day, m.Domain, reportBuilt)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return ErrClaimed
	}
	for _, d := range m.Deliveries {
		next := now
		if d.Status == StatusSuppressed {
			next = ""
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tlsreport_deliveries
			(day, policy_domain, report_id, destination, status, next_attempt) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`,
			m.Day, m.Domain, m.ReportID, d.Destination, d.Status, next); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s sqlStore) dueDeliveries(ctx context.Context, now time.Time, reportID string) ([]DueDelivery, error) {
	q := `SELECT d.id, d.day, d.policy_domain, d.report_id, d.destination, d.first_attempt, d.attempts,
		p.unique_id, p.report_gz
		FROM tlsreport_deliveries d JOIN tlsreport_reports p ON p.report_id = d.report_id
		WHERE d.status IN ('pending', 'retrying', 'sending') AND d.next_attempt != '' AND d.next_attempt <= ?`
	args := []any{fmtTime(now)}
	if reportID != "" {
		q += ` AND d.report_id = ?`
		args = append(args, reportID)
	}
	q += ` ORDER BY d.next_attempt, d.id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var due []DueDelivery
	for rows.Next() {
		var d DueDelivery
		var first string
		if err := rows.Scan(&d.ID, &d.Day, &d.Domain, &d.ReportID, &d.Destination, &first, &d.Attempts, &d.UniqueID, &d.Gz); err != nil {
			return nil, err
		}
		d.FirstAttempt = parseTime(first)
		due = append(due, d)
	}
	return due, rows.Err()
}

func (s sqlStore) claimDelivery(ctx context.Context, id int64, owner string, now, until time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE tlsreport_deliveries SET status = 'sending', next_attempt = ?, lease_owner = ?
		WHERE id = ? AND status IN ('pending', 'retrying', 'sending') AND next_attempt != '' AND next_attempt <= ?`,
		fmtTime(until), owner, id, fmtTime(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s sqlStore) recordAttempt(ctx context.Context, a Attempt) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE tlsreport_deliveries SET status = ?, attempts = ?, first_attempt = ?,
		last_attempt = ?, next_attempt = ?, msg_id = ?, last_error = ?, lease_owner = ''
		WHERE id = ? AND status = 'sending' AND lease_owner = ?`,
		a.Status, a.Attempts, fmtTime(a.FirstAttempt), fmtTime(a.LastAttempt), fmtTime(a.NextAttempt), a.MsgID, a.LastError,
		a.ID, a.Owner)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s sqlStore) deliveries(ctx context.Context, reportID string) ([]SentReport, error) {
	q := `SELECT day, policy_domain, report_id, destination, status, attempts,
		first_attempt, last_attempt, next_attempt, msg_id, last_error FROM tlsreport_deliveries`
	var args []any
	if reportID != "" {
		q += ` WHERE report_id = ?`
		args = append(args, reportID)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []SentReport
	for rows.Next() {
		var r SentReport
		var day, first, last, next string
		if err := rows.Scan(&day, &r.Domain, &r.ReportID, &r.Destination, &r.Status, &r.Attempts,
			&first, &last, &next, &r.MsgID, &r.LastError); err != nil {
			return nil, err
		}
		r.Day, _ = time.Parse(dayFormat, day)
		r.FirstAttempt = parseTime(first)
		r.LastAttempt = parseTime(last)
		r.NextAttempt = parseTime(next)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s sqlStore) pending(ctx context.Context) ([]PendingSummary, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT p.day, p.policy_domain, COUNT(*), CAST(SUM(p.success) AS BIGINT),
		CAST(SUM(p.failure) AS BIGINT), COALESCE(MAX(rep.report_id), '')
		FROM tlsreport_policies p LEFT JOIN tlsreport_reports rep
			ON rep.day = p.day AND rep.policy_domain = p.policy_domain
		WHERE rep.status IS NULL OR rep.status = ?
		GROUP BY p.day, p.policy_domain ORDER BY p.day, p.policy_domain`, reportBuilt)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PendingSummary
	for rows.Next() {
		var p PendingSummary
		var day string
		if err := rows.Scan(&day, &p.Domain, &p.Policies, &p.Successful, &p.Failed, &p.ReportID); err != nil {
			return nil, err
		}
		p.Day, _ = time.Parse(dayFormat, day)
		out = append(out, p)
	}
	return out, rows.Err()
}

func (s sqlStore) suppress(ctx context.Context, entry, note string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO tlsreport_suppressions (entry, note, added) VALUES (?, ?, ?)
		ON CONFLICT (entry) DO UPDATE SET note = excluded.note`, entry, note, fmtTime(now))
	return err
}

func (s sqlStore) unsuppress(ctx context.Context, entry string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM tlsreport_suppressions WHERE entry = ?`, entry)
	return err
}

func (s sqlStore) suppressions(ctx context.Context) ([]Suppression, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT entry, note, added FROM tlsreport_suppressions ORDER BY entry`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Suppression
	for rows.Next() {
		var e Suppression
		var added string
		if err := rows.Scan(&e.Entry, &e.Note, &added); err != nil {
			return nil, err
		}
		e.Added = parseTime(added)
		out = append(out, e)
	}
	return out, rows.Err()
}

// handoverRetention is how long a batch's hand-over mark is kept (see prune).
const handoverRetention = 72 * time.Hour

func (s sqlStore) prune(ctx context.Context, day string) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{
		`DELETE FROM tlsreport_failures WHERE policy_id IN (SELECT id FROM tlsreport_policies WHERE day < ?)`,
		`DELETE FROM tlsreport_policies WHERE day < ?`,
		`DELETE FROM tlsreport_deliveries WHERE day < ? AND status NOT IN ('pending', 'sending', 'retrying')`,
		`DELETE FROM tlsreport_reports WHERE day < ?
			AND report_id NOT IN (SELECT report_id FROM tlsreport_deliveries)`,
	} {
		if _, err := tx.ExecContext(ctx, q, day); err != nil {
			return err
		}
	}
	// A hand-over mark (one per flushed batch, up to one a second per node) only has to outlive a second
	// attempt at its batch: within the next flush, or when an outage ends, hours later, not weeks. Keeping
	// marks for the report retention (30 days) would keep millions of rows per node, so they go after
	// handoverRetention, or with the reports if those go first.
	cutoff := fmtTime(time.Now().Add(-handoverRetention))
	if day > cutoff {
		cutoff = day
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tlsreport_handovers WHERE added < ?`, cutoff); err != nil {
		return err
	}
	return tx.Commit()
}

// AddSessions implements Store.
func (s sqlStore) AddSessions(ctx context.Context, b Batch) (bool, error) {
	return wrap2("add sessions", func() (bool, error) { return s.addSessions(ctx, b) })
}

// Hold implements Store.
func (s sqlStore) Hold(ctx context.Context, b Batch) error {
	return wrap("hold sessions", s.hold(ctx, b))
}

// Held implements Store.
func (s sqlStore) Held(ctx context.Context) ([]Batch, error) {
	return wrap2("held sessions", func() ([]Batch, error) { return s.held(ctx) })
}

// Release implements Store.
func (s sqlStore) Release(ctx context.Context, id string) error {
	return wrap("release sessions", s.release(ctx, id))
}

// LoadDay implements Store.
func (s sqlStore) LoadDay(ctx context.Context, day, domain string) (map[string][]tlsrpt.PolicyResults, error) {
	return wrap2("load "+day, func() (map[string][]tlsrpt.PolicyResults, error) { return s.loadDay(ctx, day, domain) })
}

// ReportID implements Store.
func (s sqlStore) ReportID(ctx context.Context, day, domain, id, uid string, now time.Time) (string, string, string, error) {
	gotID, gotUID, status, err := s.reportID(ctx, day, domain, id, uid, now)
	return gotID, gotUID, status, wrap("report-id", err)
}

// MarkReport implements Store.
func (s sqlStore) MarkReport(ctx context.Context, m ReportMark) error {
	return wrap("mark report", s.markReport(ctx, m))
}

// DueDeliveries implements Store.
func (s sqlStore) DueDeliveries(ctx context.Context, now time.Time, reportID string) ([]DueDelivery, error) {
	return wrap2("due deliveries", func() ([]DueDelivery, error) { return s.dueDeliveries(ctx, now, reportID) })
}

// ClaimDelivery implements Store.
func (s sqlStore) ClaimDelivery(ctx context.Context, id int64, owner string, now, until time.Time) (bool, error) {
	return wrap2("claim delivery", func() (bool, error) { return s.claimDelivery(ctx, id, owner, now, until) })
}

// RecordAttempt implements Store.
func (s sqlStore) RecordAttempt(ctx context.Context, a Attempt) (bool, error) {
	return wrap2("record attempt", func() (bool, error) { return s.recordAttempt(ctx, a) })
}

// Deliveries implements Store.
func (s sqlStore) Deliveries(ctx context.Context, reportID string) ([]SentReport, error) {
	return wrap2("report log", func() ([]SentReport, error) { return s.deliveries(ctx, reportID) })
}

// Pending implements Store.
func (s sqlStore) Pending(ctx context.Context) ([]PendingSummary, error) {
	return wrap2("pending", func() ([]PendingSummary, error) { return s.pending(ctx) })
}

// Suppress implements Store.
func (s sqlStore) Suppress(ctx context.Context, entry, note string, now time.Time) error {
	return wrap("suppress", s.suppress(ctx, entry, note, now))
}

// Unsuppress implements Store.
func (s sqlStore) Unsuppress(ctx context.Context, entry string) error {
	return wrap("unsuppress", s.unsuppress(ctx, entry))
}

// Suppressions implements Store.
func (s sqlStore) Suppressions(ctx context.Context) ([]Suppression, error) {
	return wrap2("suppressions", func() ([]Suppression, error) { return s.suppressions(ctx) })
}

// Prune implements Store.
func (s sqlStore) Prune(ctx context.Context, day string) error {
	return wrap("prune", s.prune(ctx, day))
}

// wrap prefixes a store error with the operation; ErrClaimed passes unchanged.
func wrap(op string, err error) error {
	if err == nil || err == ErrClaimed {
		return err
	}
	return fmt.Errorf("tlsreport: %s: %w", op, err)
}

func wrap2[T any](op string, f func() (T, error)) (T, error) {
	v, err := f()
	return v, wrap(op, err)
}
