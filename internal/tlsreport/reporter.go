package tlsreport

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Queue is what the reporter needs of mxgate's queue: it submits report mail like any other message.
type Queue interface {
	Submit(ctx context.Context, env queue.Envelope, body io.Reader) (string, error)
}

// DKIMKey signs report mail (RFC 8460 Section 3: reports sent by mail MUST be DKIM-signed by the reporting
// domain). Publish the key with "s=email:tlsrpt" or "s=tlsrpt" in its TXT record (RPT-31).
type DKIMKey struct {
	Selector string
	// Domain is the d= domain; zero means the Submitter domain.
	Domain address.Domain
	// Signer is an RSA or Ed25519 private key.
	Signer crypto.Signer
}

// ErrConfig is wrapped by errors about the Reporter's configuration.
var ErrConfig = errors.New("tlsreport: invalid configuration")

// FieldError is a refusal of one Reporter field, so that a caller can say which of its own settings is at
// fault.
type FieldError struct {
	// Field is the Reporter field: "Contact", "Submitter", "From", "DKIM", "DB".
	Field string
	Err   error
}

func (e *FieldError) Error() string { return strings.ToLower(e.Field) + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ErrNotFound is returned by Preview when there is nothing recorded for the domain and day.
var ErrNotFound = errors.New("tlsreport: no sessions recorded")

// Reporter builds and sends the daily reports. Set the fields, then call its methods; they are safe for
// concurrent use. Several nodes sharing one state store can run reporters: a report is claimed in the
// database before it is sent, and a delivery before it is attempted.
type Reporter struct {
	// Store keeps the aggregates, reports and report log; nil means NewSQLiteStore(DB).
	Store Store
	// DB is the node's SQLite database, used when Store is nil.
	DB *store.DB
	// Local, in cluster mode (Store the shared store), is the node's own store from before it joined the
	// cluster: RetryDue also attempts the report deliveries started there and not finished (pending or
	// retrying), from there, until none is left. No report is built or claimed in it.
	Local    Store
	Resolver dnsx.Resolver
	Queue    Queue
	// HTTP posts reports to https: destinations; nil means an mtasts.NewHTTPClient (resolving with Resolver,
	// refusing non-public addresses, never following redirects) with a one-minute timeout.
	HTTP *http.Client
	// Recorder, if set, is flushed before a day's reports are built.
	Recorder *Recorder
	// Now and Rand default to time.Now and crypto/rand.Reader.
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger

	// Org is the report's "organization-name".
	Org string
	// Contact is the report's "contact-info" (RFC 8460 Section 4.4, RPT-13).
	Contact address.Address
	// Submitter is the reporting domain, in the file name, Subject and TLS-Report-Submitter header. Zero means
	// the domain of Contact; otherwise it must equal it (RFC 8460 Section 5.3, RPT-29).
	Submitter address.Domain
	// From is the report mail's From header and envelope sender. Zero means Contact.
	From address.Address
	// DKIM signs report mail; nil sends it unsigned, which receivers may discard (the daemon logs a warning).
	DKIM *DKIMKey
	// MaxDestinations bounds the rua destinations one report is sent to; 0 means 4.
	MaxDestinations int
	// OnlyFailures sends a report only when it has at least one failed session.
	OnlyFailures bool
	// Suppressed, if set, is asked about every destination ("mailto:addr" or the https URL) in addition to
	// the stored suppression list; true means the destination gets nothing.
	Suppressed func(dest string) bool

	// MaxJitter is the upper bound of the random delay after 00:00 UTC before Run sends the previous day's
	// reports (RFC 8460 Section 4.1 suggests a randomised delay); 0 means one hour.
	MaxJitter time.Duration
	// RetryInterval is how often Run looks for due retries; 0 means five minutes.
	RetryInterval time.Duration
	// RetryFor is how long after the first attempt a failed delivery is retried (RFC 8460 Section 5.5:
	// up to a day); 0 means 24 hours.
	RetryFor time.Duration
	// MinBackoff is the first retry delay, doubled at each attempt; 0 means five minutes.
	MinBackoff time.Duration
	// SendLease is how long a sender holds a delivery it attempts: another sender (node) takes it over
	// when the outcome is not recorded by then. 0 means ten minutes; it must exceed an attempt's duration
	// (an HTTPS POST times out after one minute).
	SendLease time.Duration
	// Retain is how long Run keeps aggregates and the report log; 0 means 30 days.
	Retain time.Duration
	// MigrateTimeout bounds the schema migration the first call makes; 0 means 30 seconds. Calls wait for
	// it, so a database that does not answer fails them with the migration's error instead of holding them.
	MigrateTimeout time.Duration

	initMu  sync.Mutex
	ready   bool
	st      Store
	httpDef *http.Client
}

// config is the checked configuration.
type config struct {
	submitter string
	contact   string
	from      string
	sender    address.Path // the envelope sender: From, or Contact
	dkimD     string
	maxDest   int
	jitter    time.Duration
	retryInt  time.Duration
	retryFor  time.Duration
	backoff   time.Duration
	retain    time.Duration
	lease     time.Duration
}

// Check validates the configuration. The daemon calls it at start.
func (r *Reporter) Check() error {
	_, err := r.config()
	return err
}

func (r *Reporter) config() (config, error) {
	var errs []error
	c := config{maxDest: r.MaxDestinations, jitter: r.MaxJitter, retryInt: r.RetryInterval, retryFor: r.RetryFor, backoff: r.MinBackoff}
	if r.DB == nil && r.Store == nil {
		errs = append(errs, &FieldError{"DB", errors.New("not set")})
	}
	if r.Contact.IsZero() || r.Contact.Domain.IsZero() {
		errs = append(errs, &FieldError{"Contact", errors.New("an address with a domain is required")})
	}
	c.contact = r.Contact.String()
	c.submitter = r.Submitter.String()
	if r.Submitter.IsZero() {
		c.submitter = r.Contact.Domain.String()
	} else if !r.Contact.Domain.IsZero() && r.Submitter != r.Contact.Domain {
		// RFC 8460 Section 5.3: TLS-Report-Submitter MUST be the domain of contact-info (RPT-29).
		errs = append(errs, &FieldError{"Submitter", fmt.Errorf("%s differs from the domain of contact %s", r.Submitter, r.Contact)})
	}
	c.from, c.sender = r.From.String(), address.PathTo(r.From)
	if r.From.IsZero() {
		c.from, c.sender = c.contact, address.PathTo(r.Contact)
	}
	if r.DKIM != nil {
		if r.DKIM.Signer == nil || r.DKIM.Selector == "" || strings.ContainsAny(r.DKIM.Selector, "\r\n;= ") {
			errs = append(errs, &FieldError{"DKIM", errors.New("selector and signer are required")})
		}
		c.dkimD = r.DKIM.Domain.String()
		if r.DKIM.Domain.IsZero() {
			c.dkimD = c.submitter
		}
	}
	if c.maxDest <= 0 {
		c.maxDest = 4
	}
	if c.jitter <= 0 {
		c.jitter = time.Hour
	}
	if c.retryInt <= 0 {
		c.retryInt = 5 * time.Minute
	}
	if c.retryFor <= 0 {
		c.retryFor = 24 * time.Hour
	}
	if c.backoff <= 0 {
		c.backoff = 5 * time.Minute
	}
	c.lease = r.SendLease
	if c.lease <= 0 {
		c.lease = sendLease
	}
	c.retain = r.Retain
	if c.retain <= 0 {
		c.retain = 30 * 24 * time.Hour
	}
	for _, s := range []string{r.Org, c.contact, c.from, c.submitter} {
		// Header injection: nothing that ends up in a header may hold CR or LF.
		if strings.ContainsAny(s, "\r\n") {
			errs = append(errs, errors.New("CR or LF in Org, Contact, From or Submitter"))
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, nil
}

// init checks the configuration and migrates the schema once.
func (r *Reporter) init(ctx context.Context) (config, error) {
	c, err := r.config()
	if err != nil {
		return config{}, err
	}
	r.initMu.Lock()
	defer r.initMu.Unlock()
	if !r.ready {
		st := r.Store
		if st == nil {
			st = NewSQLiteStore(r.DB)
		}
		timeout := r.MigrateTimeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		mctx, cancel := context.WithTimeout(ctx, timeout)
		err := st.Migrate(mctx)
		cancel()
		if err != nil {
			return config{}, err
		}
		if r.Local != nil {
			if err := r.Local.Migrate(ctx); err != nil {
				return config{}, fmt.Errorf("tlsreport: the node's own store: %w", err)
			}
		}
		r.st, r.ready = st, true
	}
	return c, nil
}

func (r *Reporter) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

func (r *Reporter) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Reporter) randomBytes(n int) ([]byte, error) {
	rd := r.Rand
	if rd == nil {
		rd = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rd, b); err != nil {
		return nil, fmt.Errorf("tlsreport: random: %w", err)
	}
	return b, nil
}

// random returns n random bytes in hex.
func (r *Reporter) random(n int) (string, error) {
	b, err := r.randomBytes(n)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func (r *Reporter) httpClient() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	r.initMu.Lock()
	defer r.initMu.Unlock()
	if r.httpDef == nil {
		res := r.Resolver
		r.httpDef = mtasts.NewHTTPClient(mtasts.ClientOptions{
			LookupIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
				if res == nil {
					return nil, errors.New("no resolver")
				}
				ips, _, err := res.LookupIP(ctx, host)
				return ips, err
			},
			CheckAddr: mtasts.PublicOnly(nil),
			Timeout:   time.Minute,
		})
	}
	return r.httpDef
}

// Day returns the UTC day holding t, as its 00:00:00Z.
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Pending is a report built from the recorded sessions of one Policy Domain on one UTC day.
type Pending struct {
	Day    time.Time
	Domain string // A-label
	Report *tlsrpt.Report
	// UniqueID is the file name's unique-id (RFC 8460 Section 5.1).
	UniqueID string
	// Status is "built" until SendDay handles the report, then "sent", "no-record" or "skipped".
	Status string
}

// Failures returns the report's total failed session count.
func (p Pending) Failures() int64 {
	var n int64
	for _, pr := range p.Report.Policies {
		n += pr.Summary.Failed
	}
	return n
}

// BuildReports builds one report per Policy Domain with sessions on day's UTC day (RFC 8460 Section 4.1,
// RPT-27), ordered by domain. Each report gets a report-id the first time it is built, kept in the store so
// that building or sending it again keeps it (RPT-14).
func (r *Reporter) BuildReports(ctx context.Context, day time.Time) ([]Pending, error) {
	c, err := r.init(ctx)
	if err != nil {
		return nil, err
	}
	return r.build(ctx, c, Day(day), "")
}

// build builds the reports of day, or only domain's when domain is not "".
func (r *Reporter) build(ctx context.Context, c config, day time.Time, domain string) ([]Pending, error) {
	if r.Recorder != nil {
		// Sessions still buffered belong in the report.
		if err := r.Recorder.Flush(ctx); err != nil {
			return nil, err
		}
	}
	byDomain, err := r.st.LoadDay(ctx, day.Format(dayFormat), domain)
	if err != nil {
		return nil, err
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	var out []Pending
	for _, d := range domains {
		id, uid, status, err := r.reportID(ctx, c, day, d)
		if err != nil {
			return nil, err
		}
		rep := &tlsrpt.Report{
			OrganizationName: r.Org,
			// RFC 8460 Section 4.1 and 4.4: one UTC day; Spec: end is the next day's 00:00:00Z.
			DateRange:   tlsrpt.DateRange{Start: day, End: day.AddDate(0, 0, 1)},
			ContactInfo: c.contact,
			ReportID:    id,
			Policies:    byDomain[d],
		}
		out = append(out, Pending{Day: day, Domain: d, Report: rep, UniqueID: uid, Status: status})
	}
	return out, nil
}

// reportID returns the stored report-id of (day, domain), creating it the first time:
// "<yyyymmdd>.<policy-domain>.<random>@<submitter>", which is unique, free of CR/LF, and usable as the
// msg-id the Subject wants (RFC 8460 Section 5.3, RPT-14, RPT-30).
func (r *Reporter) reportID(ctx context.Context, c config, day time.Time, domain string) (id, uid, status string, err error) {
	uid, err = r.random(8)
	if err != nil {
		return "", "", "", err
	}
	id = fmt.Sprintf("%s.%s.%s@%s", day.Format("20060102"), domain, uid, c.submitter)
	// The first node to build the report stores its id; every other build (on any node) gets that one.
	return r.st.ReportID(ctx, day.Format(dayFormat), domain, id, uid, r.now())
}

// Preview builds the report of domain for day's UTC day as it stands now, without sending it.
func (r *Reporter) Preview(ctx context.Context, domain string, day time.Time) (*tlsrpt.Report, error) {
	c, err := r.init(ctx)
	if err != nil {
		return nil, err
	}
	d := canonDomain(domain)
	ps, err := r.build(ctx, c, Day(day), d)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w for %s on %s", ErrNotFound, d, Day(day).Format(dayFormat))
	}
	return ps[0].Report, nil
}
