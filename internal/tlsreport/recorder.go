package tlsreport

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// RecorderOptions configure NewRecorder.
type RecorderOptions struct {
	// Now is the clock for sessions that carry no time; nil means time.Now.
	Now func() time.Time
	// Logger receives flush errors; nil discards them.
	Logger *slog.Logger
	// FlushInterval is how often buffered counts are written; 0 means one second, negative disables the
	// background flush (tests then call Flush).
	FlushInterval time.Duration
	// FlushSessions starts a flush early once this many sessions are buffered; 0 means 1000.
	FlushSessions int
	// OnFlush, when set, is called after each background flush with its error (nil when the buffered
	// counts are in the store).
	OnFlush func(err error)
	// MaxKeys bounds the distinct aggregates held in memory between flushes; sessions that would add a new
	// one beyond it are dropped (and counted in Dropped) so a stuck database cannot exhaust memory. 0 means
	// 100000.
	MaxKeys int
}

// Recorder aggregates session results for TLS reporting. Record is cheap: it adds to an in-memory aggregate
// under a mutex; a background goroutine writes the aggregates to the state store in one transaction every
// FlushInterval or FlushSessions sessions. Counts in the store survive a restart; Close flushes what is
// buffered.
type Recorder struct {
	db            *store.DB
	now           func() time.Time
	log           *slog.Logger
	flushSessions int
	maxKeys       int
	onFlush       func(error)

	mu       sync.Mutex
	buf      map[policyKey]*policyAgg
	keys     int
	sessions int
	dropped  int64
	closed   bool

	flushMu sync.Mutex // serialises flushes, so that a failed batch is merged back before the next one
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// policyKey identifies one element of a report's "policies" array on one day.
type policyKey struct {
	day          string
	domain       string
	policyType   tlsrpt.PolicyType
	policyString string // JSON array
	mxHost       string // JSON array
}

// failureKey identifies one "failure-details" entry of a policy (RFC 8460 Section 4.4, RPT-20).
type failureKey struct {
	resultType   tlsrpt.ResultType
	sendingIP    string
	receivingMX  string
	helo         string
	receivingIP  string
	reasonCode   string
	additionInfo string
}

type policyAgg struct {
	success, failure int64
	failures         map[failureKey]int64
}

// NewRecorder migrates the tlsreport schema and starts the background flusher.
func NewRecorder(ctx context.Context, db *store.DB, o RecorderOptions) (*Recorder, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	r := &Recorder{
		db:            db,
		now:           o.Now,
		log:           o.Logger,
		flushSessions: o.FlushSessions,
		maxKeys:       o.MaxKeys,
		onFlush:       o.OnFlush,
		buf:           map[policyKey]*policyAgg{},
		kick:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.flushSessions <= 0 {
		r.flushSessions = 1000
	}
	if r.maxKeys <= 0 {
		r.maxKeys = 100000
	}
	interval := o.FlushInterval
	if interval == 0 {
		interval = time.Second
	}
	go r.loop(interval)
	return r, nil
}

func (r *Recorder) loop(interval time.Duration) {
	defer close(r.done)
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-r.stop:
			return
		case <-tick:
		case <-r.kick:
		}
		err := r.Flush(context.Background())
		if err != nil {
			r.log.Error("tlsreport: flushing session results", "err", err)
		}
		if r.onFlush != nil {
			r.onFlush(err)
		}
	}
}

// Record adds one session result. It never blocks on the database. Sessions recorded after Close are
// dropped.
func (r *Recorder) Record(s tlsrpt.Session) {
	at := s.At
	if at.IsZero() {
		at = r.now()
	}
	pk := policyKey{
		// RFC 8460 Section 4.1: reports cover UTC days.
		day:          at.UTC().Format(dayFormat),
		domain:       canonDomain(s.Policy.Domain),
		policyType:   s.Policy.Type,
		policyString: jsonArray(s.Policy.String),
		mxHost:       jsonArray(canonDomains(s.Policy.MXHost)),
	}
	if pk.policyType == "" {
		pk.policyType = tlsrpt.PolicyNoPolicyFound
	}
	var fk failureKey
	var fcount int64
	if !s.Success && s.Failure != nil {
		f := s.Failure
		fk = failureKey{
			resultType:   f.ResultType,
			sendingIP:    canonIP(f.SendingMTAIP),
			receivingMX:  canonDomain(f.ReceivingMXHostname),
			helo:         f.ReceivingMXHelo,
			receivingIP:  canonIP(f.ReceivingIP),
			reasonCode:   f.FailureReasonCode,
			additionInfo: f.AdditionalInfo,
		}
		fcount = max(f.FailedSessionCount, 1)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.dropped++
		return
	}
	agg := r.buf[pk]
	if agg == nil {
		if r.keys >= r.maxKeys {
			r.dropped++
			return
		}
		agg = &policyAgg{}
		r.buf[pk] = agg
		r.keys++
	}
	if s.Success {
		agg.success++
	} else {
		// RFC 8460 Section 4.2: a session that did not negotiate policy-compliant TLS is a failed session,
		// whatever happened to the mail afterwards (testing mode, RPT-16).
		agg.failure++
		if fcount > 0 {
			if agg.failures == nil {
				agg.failures = map[failureKey]int64{}
			}
			if _, ok := agg.failures[fk]; !ok {
				r.keys++
			}
			agg.failures[fk] += fcount
		}
	}
	r.sessions++
	if r.sessions >= r.flushSessions {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// Dropped returns how many sessions were dropped (buffer full or recorder closed).
func (r *Recorder) Dropped() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Flush writes the buffered aggregates to the store in one transaction. On failure they are kept for the
// next flush.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	batch := r.buf
	r.buf = map[policyKey]*policyAgg{}
	r.keys, r.sessions = 0, 0
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := r.write(ctx, batch); err != nil {
		r.mu.Lock()
		for k, a := range batch {
			r.mergeLocked(k, a)
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

func (r *Recorder) mergeLocked(k policyKey, a *policyAgg) {
	cur := r.buf[k]
	if cur == nil {
		r.buf[k] = a
		r.keys += 1 + len(a.failures)
		return
	}
	cur.success += a.success
	cur.failure += a.failure
	for fk, n := range a.failures {
		if cur.failures == nil {
			cur.failures = map[failureKey]int64{}
		}
		if _, ok := cur.failures[fk]; !ok {
			r.keys++
		}
		cur.failures[fk] += n
	}
}

func (r *Recorder) write(ctx context.Context, batch map[policyKey]*policyAgg) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tlsreport: flush: %w", err)
	}
	defer tx.Rollback()
	for k, a := range batch {
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO tlsreport_policies
			(day, policy_domain, policy_type, policy_string, mx_host, success, failure) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (day, policy_domain, policy_type, policy_string, mx_host) DO UPDATE SET
			success = success + excluded.success, failure = failure + excluded.failure
			RETURNING id`,
			k.day, k.domain, string(k.policyType), k.policyString, k.mxHost, a.success, a.failure).Scan(&id)
		if err != nil {
			return fmt.Errorf("tlsreport: flush: %w", err)
		}
		for fk, n := range a.failures {
			_, err := tx.ExecContext(ctx, `INSERT INTO tlsreport_failures
				(policy_id, result_type, sending_ip, receiving_mx, receiving_helo, receiving_ip, reason_code, additional, count)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (policy_id, result_type, sending_ip, receiving_mx, receiving_helo, receiving_ip, reason_code, additional)
				DO UPDATE SET count = count + excluded.count`,
				id, string(fk.resultType), fk.sendingIP, fk.receivingMX, fk.helo, fk.receivingIP, fk.reasonCode, fk.additionInfo, n)
			if err != nil {
				return fmt.Errorf("tlsreport: flush: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("tlsreport: flush: %w", err)
	}
	return nil
}

// Close stops the background flusher and flushes what is buffered. The database stays open.
func (r *Recorder) Close(ctx context.Context) error {
	r.mu.Lock()
	already := r.closed
	r.closed = true
	r.mu.Unlock()
	if !already {
		close(r.stop)
		<-r.done
	}
	return r.Flush(ctx)
}

// canonDomain returns the A-label form of a domain (RFC 8460 Section 4.4: policy-domain and mx-host in
// A-labels, RPT-15), or the lower-cased input when it does not parse (an mx pattern such as "*.example.net").
func canonDomain(s string) string {
	if s == "" {
		return ""
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		return "*." + canonDomain(rest)
	}
	d, err := address.ParseDomain(s)
	if err != nil {
		return strings.ToLower(strings.TrimSuffix(s, "."))
	}
	return d.String()
}

func canonDomains(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = canonDomain(s)
	}
	return out
}

// canonIP writes an address the way RFC 8460 Section 4.4 asks (RPT-18): IPv4 dotted quad, IPv6 in RFC 5952
// form (lower case, "::" compression); an unparsable value is kept as it is.
func canonIP(s string) string {
	if s == "" {
		return ""
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return ip.Unmap().WithZone("").String()
}

func jsonArray(ss []string) string {
	if ss == nil {
		ss = []string{}
	}
	b, err := json.Marshal(ss)
	if err != nil {
		// A []string always marshals.
		return "[]"
	}
	return string(b)
}

func parseJSONArray(s string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	return out, nil
}
