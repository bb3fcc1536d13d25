package tlsreport

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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
	// Store is where the aggregates go; nil means the SQLite database given to NewRecorder. When it is
	// another store (the database a cluster shares), the SQLite database holds the batches that could not be
	// written to it, and they are handed over once it answers again.
	Store Store
	// MaxKeys bounds the distinct aggregates held in memory between flushes; sessions that would add a new
	// one beyond it are dropped (and counted in Dropped) so a stuck database cannot exhaust memory. 0 means
	// 100000.
	MaxKeys int
	// SharedTimeout bounds each statement on a Store that has the SQLite database as its fallback (its
	// migration, a flush, the hand-over of each held batch), so that a shared database that does not answer
	// holds up neither the start nor the flushes. 0 means 10 seconds.
	SharedTimeout time.Duration
}

// sharedTimeout is the default RecorderOptions.SharedTimeout.
const sharedTimeout = 10 * time.Second

// Recorder aggregates session results for TLS reporting. Record is cheap: it adds to an in-memory aggregate
// under a mutex; a background goroutine writes the aggregates to the state store in one transaction every
// FlushInterval or FlushSessions sessions. Counts in the store survive a restart; Close flushes what is
// buffered.
type Recorder struct {
	store         Store
	local         Store // nil, or where batches wait while store is unreachable
	now           func() time.Time
	log           *slog.Logger
	flushSessions int
	maxKeys       int
	onFlush       func(error)
	timeout       time.Duration // of each call to store when local is set

	migrated        atomic.Bool
	held            atomic.Int64 // batches in local
	handOverFailing atomic.Bool  // logged once per run of failures

	mu       sync.Mutex
	buf      map[policyKey]*policyAgg
	keys     int
	sessions int
	dropped  int64
	closed   bool

	flushMu sync.Mutex // serialises flushes, so that a failed batch is merged back before the next one
	retry   *Batch     // under flushMu: the batch of a failed flush without a local store, written again first
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

// NewRecorder migrates the tlsreport schema and starts the background flusher. db is the node's SQLite
// database: the store itself, or, when o.Store is set, where batches wait while o.Store is unreachable.
func NewRecorder(ctx context.Context, db *store.DB, o RecorderOptions) (*Recorder, error) {
	r := &Recorder{
		store:         o.Store,
		now:           o.Now,
		log:           o.Logger,
		flushSessions: o.FlushSessions,
		maxKeys:       o.MaxKeys,
		onFlush:       o.OnFlush,
		timeout:       o.SharedTimeout,
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
	if r.timeout <= 0 {
		r.timeout = sharedTimeout
	}
	if r.store == nil {
		r.store = NewSQLiteStore(db)
	} else if db != nil {
		local := NewSQLiteStore(db)
		r.local = local
		if err := r.local.Migrate(ctx); err != nil {
			return nil, err
		}
		// A node that ran on its own database until now: the aggregates of the days it has not reported yet
		// go to the shared store, by the hand-over of held batches.
		adopted, err := local.adoptAggregates(ctx, rand.Text())
		if err != nil {
			return nil, fmt.Errorf("tlsreport: hand over the node's own aggregates: %w", err)
		}
		if adopted {
			r.log.Info("tlsreport: session results recorded before this node joined the cluster are handed over to the shared store")
		}
		if n, err := local.pendingDeliveries(ctx); err != nil {
			return nil, fmt.Errorf("tlsreport: %w", err)
		} else if n > 0 {
			r.log.Info("tlsreport: report deliveries started before this node joined the cluster are finished from its own database", "deliveries", n)
		}
		held, err := r.local.Held(ctx)
		if err != nil {
			return nil, err
		}
		r.held.Store(int64(len(held)))
	}
	mctx, cancel := ctx, context.CancelFunc(func() {})
	if r.local != nil {
		// A shared store that does not answer (a partition rather than a refusal) must not hold up the start.
		mctx, cancel = context.WithTimeout(ctx, r.timeout)
	}
	err := r.store.Migrate(mctx)
	cancel()
	if err != nil {
		if r.local == nil {
			return nil, err
		}
		// The shared database is unreachable: sessions are held locally, and the next flush tries again.
		r.log.Warn("tlsreport: the shared store is unreachable; session results are kept locally until it answers", "err", err)
	} else {
		r.migrated.Store(true)
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
	if len(batch) == 0 && r.held.Load() == 0 && r.retry == nil {
		return nil
	}
	var b Batch
	if len(batch) > 0 {
		b = toBatch(batch)
		// Every batch has its ID from its first attempt, so that one whose commit reached the database but
		// whose reply was lost (a timeout, a broken connection) is applied once when it is written again.
		b.ID = rand.Text()
	}
	if r.local != nil {
		err := r.writeShared(ctx, b)
		if err != nil {
			// Neither database took the batch: its counts wait in the buffer (and get a new ID).
			r.mergeBack(batch)
		}
		return err
	}
	return r.write(ctx, batch, b)
}

// mergeBack returns the counts of a batch that was not written to the buffer.
func (r *Recorder) mergeBack(batch map[policyKey]*policyAgg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, a := range batch {
		r.mergeLocked(k, a)
	}
}

// write adds b, the batch of buf, to the store, after the batch of a failed flush: that one may have been
// applied, so it is written again as it was (same ID) rather than merged into newer counts. While it fails,
// newer counts wait in the buffer.
func (r *Recorder) write(ctx context.Context, buf map[policyKey]*policyAgg, b Batch) error {
	if r.retry != nil {
		if _, err := r.store.AddSessions(ctx, *r.retry); err != nil {
			r.mergeBack(buf)
			return fmt.Errorf("tlsreport: flush: %w", err)
		}
		r.retry = nil
	}
	if len(b.Aggregates) == 0 {
		return nil
	}
	if _, err := r.store.AddSessions(ctx, b); err != nil {
		r.retry = &b
		return fmt.Errorf("tlsreport: flush: %w", err)
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

// writeShared adds b to the shared store. When that fails, b is held in the local store instead (and
// writeShared succeeds); once the shared store answers, the held batches are handed over to it.
func (r *Recorder) writeShared(ctx context.Context, b Batch) error {
	// Bounded: sessions wait locally rather than behind a shared store that does not answer.
	sctx, cancel := context.WithTimeout(ctx, r.timeout)
	err := r.ensureMigrated(sctx)
	if err == nil && len(b.Aggregates) > 0 {
		_, err = r.store.AddSessions(sctx, b)
	}
	cancel()
	if err == nil {
		// b is in the store whatever happens to the hand-over, which the next flush tries again.
		herr := r.handOver(ctx)
		if herr != nil && !r.handOverFailing.Swap(true) {
			r.log.Warn("tlsreport: handing over session results kept locally failed; retrying at each flush", "err", herr)
		} else if herr == nil {
			r.handOverFailing.Store(false)
		}
		return nil
	}
	if len(b.Aggregates) == 0 {
		// Nothing new: the held batches wait for the next flush.
		return nil
	}
	// Held with the ID it was first written with: if that write was applied after all, the hand-over
	// finds the ID and only releases the batch.
	if herr := r.local.Hold(ctx, b); herr != nil {
		return fmt.Errorf("tlsreport: flush: %w; keeping them locally: %w", err, herr)
	}
	if r.held.Add(1) == 1 {
		r.log.Warn("tlsreport: the shared store is unreachable; session results are kept locally until it answers", "err", err)
	}
	return nil
}

func (r *Recorder) ensureMigrated(ctx context.Context) error {
	if r.migrated.Load() {
		return nil
	}
	if err := r.store.Migrate(ctx); err != nil {
		return err
	}
	r.migrated.Store(true)
	return nil
}

// handOver writes the locally held batches to the store, each once (by its ID), and releases them.
func (r *Recorder) handOver(ctx context.Context) error {
	if r.held.Load() == 0 {
		return nil
	}
	held, err := r.local.Held(ctx)
	if err != nil {
		return fmt.Errorf("tlsreport: hand over held sessions: %w", err)
	}
	for _, b := range held {
		// Bounded like the flush's own write: a shared store that stalls mid hand-over must not keep the
		// flush (and so flushMu, Record's buffer and the report builder's flush) waiting.
		sctx, cancel := context.WithTimeout(ctx, r.timeout)
		_, err := r.store.AddSessions(sctx, b)
		cancel()
		if err != nil {
			return fmt.Errorf("tlsreport: hand over held sessions: %w", err)
		}
		// A crash here leaves the batch held; the next hand-over finds its ID applied and only releases it.
		if err := r.local.Release(ctx, b.ID); err != nil {
			return fmt.Errorf("tlsreport: hand over held sessions: %w", err)
		}
		r.held.Add(-1)
	}
	r.log.Info("tlsreport: session results kept locally were handed over to the shared store", "batches", len(held))
	return nil
}

// Held returns how many batches of session results wait in the node's database for the shared store to
// answer again (always 0 without a shared store).
func (r *Recorder) Held() int64 { return r.held.Load() }

func toBatch(batch map[policyKey]*policyAgg) Batch {
	var b Batch
	for k, a := range batch {
		agg := Aggregate{Day: k.day, Domain: k.domain, PolicyType: k.policyType, PolicyString: k.policyString,
			MXHost: k.mxHost, Success: a.success, Failure: a.failure}
		for fk, n := range a.failures {
			agg.Failures = append(agg.Failures, FailureCount{ResultType: fk.resultType, SendingIP: fk.sendingIP,
				ReceivingMX: fk.receivingMX, Helo: fk.helo, ReceivingIP: fk.receivingIP, ReasonCode: fk.reasonCode,
				Additional: fk.additionInfo, Count: n})
		}
		b.Aggregates = append(b.Aggregates, agg)
	}
	return b
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
