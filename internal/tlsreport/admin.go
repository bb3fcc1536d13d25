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
	return r.st.Pending(ctx)
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
	return r.st.Suppress(ctx, e, note, r.now())
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
	return r.st.Unsuppress(ctx, e)
}

// Suppressions returns the suppression list, sorted.
func (r *Reporter) Suppressions(ctx context.Context) ([]Suppression, error) {
	if _, err := r.init(ctx); err != nil {
		return nil, err
	}
	return r.st.Suppressions(ctx)
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
	return r.st.Prune(ctx, Day(before).Format(dayFormat))
}
