package tlsreport

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// PendingSummary is one Policy Domain's aggregate on one day whose report has not been sent yet (today's,
// or an earlier day's that SendDay has not handled).
type PendingSummary struct {
	Day        time.Time
	Domain     string
	Policies   int
	Successful int64
	Failed     int64
	// ReportID is "" until the report is first built.
	ReportID string
}

// Pending lists the aggregates not yet handled by SendDay, oldest day first.
func (r *Reporter) Pending(ctx context.Context) ([]PendingSummary, error) {
	if _, err := r.init(ctx); err != nil {
		return nil, err
	}
	if r.Recorder != nil {
		if err := r.Recorder.Flush(ctx); err != nil {
			return nil, err
		}
	}
	rows, err := r.DB.QueryContext(ctx, `SELECT p.day, p.policy_domain, COUNT(*), SUM(p.success), SUM(p.failure),
		COALESCE(MAX(rep.report_id), '')
		FROM tlsreport_policies p LEFT JOIN tlsreport_reports rep
			ON rep.day = p.day AND rep.policy_domain = p.policy_domain
		WHERE rep.status IS NULL OR rep.status = ?
		GROUP BY p.day, p.policy_domain ORDER BY p.day, p.policy_domain`, reportBuilt)
	if err != nil {
		return nil, fmt.Errorf("tlsreport: pending: %w", err)
	}
	defer rows.Close()
	var out []PendingSummary
	for rows.Next() {
		var s PendingSummary
		var day string
		if err := rows.Scan(&day, &s.Domain, &s.Policies, &s.Successful, &s.Failed, &s.ReportID); err != nil {
			return nil, fmt.Errorf("tlsreport: pending: %w", err)
		}
		s.Day, _ = time.Parse(dayFormat, day)
		out = append(out, s)
	}
	return out, rows.Err()
}

// Suppression is one entry of the suppression list.
type Suppression struct {
	// Entry is a mail address, a domain (all its addresses and https hosts) or an https URL, lower case.
	Entry string
	Note  string
	Added time.Time
}

// normEntry lower-cases an entry and drops a "mailto:" prefix.
func normEntry(e string) (string, error) {
	e = strings.ToLower(strings.TrimSpace(e))
	e = strings.TrimPrefix(e, "mailto:")
	if e == "" || strings.ContainsAny(e, "\r\n\t ") {
		return "", fmt.Errorf("tlsreport: invalid suppression entry %q", e)
	}
	return e, nil
}

// Suppress adds entry (an address, a domain or an https URL) to the suppression list: matching destinations
// receive no reports.
func (r *Reporter) Suppress(ctx context.Context, entry, note string) error {
	if _, err := r.init(ctx); err != nil {
		return err
	}
	e, err := normEntry(entry)
	if err != nil {
		return err
	}
	_, err = r.DB.ExecContext(ctx, `INSERT INTO tlsreport_suppressions (entry, note, added) VALUES (?, ?, ?)
		ON CONFLICT (entry) DO UPDATE SET note = excluded.note`, e, note, r.now().Format(timeFormat))
	if err != nil {
		return fmt.Errorf("tlsreport: suppress: %w", err)
	}
	return nil
}

// Unsuppress removes entry from the suppression list.
func (r *Reporter) Unsuppress(ctx context.Context, entry string) error {
	if _, err := r.init(ctx); err != nil {
		return err
	}
	e, err := normEntry(entry)
	if err != nil {
		return err
	}
	if _, err := r.DB.ExecContext(ctx, `DELETE FROM tlsreport_suppressions WHERE entry = ?`, e); err != nil {
		return fmt.Errorf("tlsreport: unsuppress: %w", err)
	}
	return nil
}

// Suppressions returns the suppression list, sorted.
func (r *Reporter) Suppressions(ctx context.Context) ([]Suppression, error) {
	if _, err := r.init(ctx); err != nil {
		return nil, err
	}
	rows, err := r.DB.QueryContext(ctx, `SELECT entry, note, added FROM tlsreport_suppressions ORDER BY entry`)
	if err != nil {
		return nil, fmt.Errorf("tlsreport: suppressions: %w", err)
	}
	defer rows.Close()
	var out []Suppression
	for rows.Next() {
		var s Suppression
		var added string
		if err := rows.Scan(&s.Entry, &s.Note, &added); err != nil {
			return nil, fmt.Errorf("tlsreport: suppressions: %w", err)
		}
		s.Added = parseTime(added)
		out = append(out, s)
	}
	return out, rows.Err()
}

type suppressionSet map[string]bool

func (r *Reporter) suppressionSet(ctx context.Context) (suppressionSet, error) {
	list, err := r.Suppressions(ctx)
	if err != nil {
		return nil, err
	}
	s := suppressionSet{}
	for _, e := range list {
		s[e.Entry] = true
	}
	return s, nil
}

// match reports whether u is suppressed: by its address or URL, or by its domain or host.
func (s suppressionSet) match(u tlsrpt.URI) bool {
	switch u.Scheme {
	case tlsrpt.SchemeMailto:
		a := strings.ToLower(u.Address)
		dom := a[strings.LastIndexByte(a, '@')+1:]
		return s[a] || s[dom]
	case tlsrpt.SchemeHTTPS:
		if s[strings.ToLower(u.URL)] {
			return true
		}
		p, err := url.Parse(u.URL)
		return err == nil && s[strings.ToLower(p.Hostname())]
	}
	return false
}

// Prune deletes the aggregates, reports and report log of the days before before's UTC day.
func (r *Reporter) Prune(ctx context.Context, before time.Time) error {
	if _, err := r.init(ctx); err != nil {
		return err
	}
	day := Day(before).Format(dayFormat)
	tx, err := r.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tlsreport: prune: %w", err)
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
			return fmt.Errorf("tlsreport: prune: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("tlsreport: prune: %w", err)
	}
	return nil
}
