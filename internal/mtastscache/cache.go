package mtastscache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Defaults for the zero values of Options.
const (
	// RFC 8461 Section 3.3: "senders SHOULD wait at least 5 minutes before attempting to fetch the policy again
	// for the same policy id" (STS-35).
	DefaultFailureBackoff = 5 * time.Minute
	// RFC 8461 Section 10.2 suggests a daily proactive refresh (STS-59).
	DefaultRefreshAge = 24 * time.Hour
	// DefaultUnusedAfter: policies not used for this long are no longer refreshed, and are dropped once expired.
	DefaultUnusedAfter = 30 * 24 * time.Hour
	// DefaultRefreshInterval is how often Run looks for policies due for refresh (with ±20% jitter).
	DefaultRefreshInterval = 15 * time.Minute
)

// ErrNotCached is returned by the admin methods for a domain that has no cached policy.
var ErrNotCached = errors.New("mtastscache: no cached policy for domain")

// Fetcher fetches a domain's policy from https://mta-sts.<domain>/.well-known/mta-sts.txt. *mtasts.Fetcher
// implements it; errors wrap mtasts.ErrFetch, mtasts.ErrWebPKI or mtasts.ErrPolicyInvalid.
type Fetcher interface {
	Fetch(ctx context.Context, domain address.Domain) (*mtasts.Policy, []byte, error)
}

// Options configures a Cache. Resolver, Fetcher and one of Store and DB are required.
type Options struct {
	// Store persists the policies; DB, when Store is nil, means SQLiteStore{DB: DB}.
	Store    Store
	DB       *store.DB
	Resolver dnsx.Resolver
	Fetcher  Fetcher
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand jitters Run's refresh interval; nil means the math/rand/v2 top-level source. A *rand.Rand is not
	// safe for concurrent use, so the Cache serialises its use.
	Rand   *rand.Rand
	Logger *slog.Logger
	// FailureBackoff is how long after a failed fetch no new fetch is tried for the same (domain, policy id).
	// Zero means DefaultFailureBackoff.
	FailureBackoff time.Duration
	// RefreshAge: RefreshDue refreshes a policy in use once it is older than RefreshAge or past half its
	// max_age, whichever comes first. Zero means DefaultRefreshAge.
	RefreshAge time.Duration
	// UnusedAfter: a policy is "in use" if it was served (or fetched) within this duration. Zero means
	// DefaultUnusedAfter.
	UnusedAfter time.Duration
	// RefreshInterval is Run's period. Zero means DefaultRefreshInterval.
	RefreshInterval time.Duration

	// Local, when set, puts the cache in cluster mode (cluster.go): Store is then the SharedStore of the
	// cluster and Local the node's own copy of the cache (a SQLiteStore), which it starts from when Store
	// does not answer. Node names this node as the holder of the refresh lease; it is required with Local.
	Local Store
	Node  string
	// SyncInterval is how often Run merges the shared store into the cache in cluster mode. Zero means
	// DefaultSyncInterval.
	SyncInterval time.Duration
}

// Source says where the policy of a Lookup came from.
type Source string

const (
	SourceCache   Source = "cache"   // an unexpired cached policy
	SourceFetched Source = "fetched" // fetched during this lookup
	SourceNone    Source = "none"    // no policy in force
)

// Lookup is the MTA-STS policy in force for one delivery attempt.
type Lookup struct {
	// Policy is nil when no policy is in force. A policy with mode none is returned as such, so callers can
	// tell "the domain published mode none" from "no policy". Callers must not modify it.
	Policy *mtasts.Policy
	// ID is the TXT record id of the policy in force ("" when Policy is nil).
	ID               string
	Fetched, Expires time.Time
	Source           Source
	// Failure is the RFC 8460 result type to report for this attempt ("" for none): a failed fetch
	// (STS-92), or a failed discovery while a cached policy is in force (STS-93).
	Failure tlsrpt.ResultType
	// FailureDetail explains Failure; it is also set, with Failure "", for failures that are not reported
	// (for example a temporary DNS failure with no cached policy).
	FailureDetail string
}

// Stats are counters for metrics.
type Stats struct {
	Fetches         uint64 // HTTPS fetches attempted
	FetchFailures   map[tlsrpt.ResultType]uint64
	Refreshes       uint64 // proactive or admin refreshes attempted
	RefreshFailures uint64
	Entries         map[mtasts.Mode]int // unexpired cached policies by mode
	Expired         int                 // cached policies past their expiry (never applied)
}

// Cache is the persisted MTA-STS policy cache. It is safe for concurrent use.
type Cache struct {
	store           Store
	resolver        dnsx.Resolver
	fetcher         Fetcher
	now             func() time.Time
	log             *slog.Logger
	failureBackoff  time.Duration
	refreshAge      time.Duration
	unusedAfter     time.Duration
	refreshInterval time.Duration

	// Cluster mode (cluster.go): local is the node's copy, nil on a single node. syncMu makes syncs one at a
	// time and guards sharedMigrated.
	local          Store
	node           string
	syncInterval   time.Duration
	syncMu         sync.Mutex
	sharedMigrated bool

	randMu sync.Mutex
	rand   *rand.Rand

	// writeMu serialises changes to entries, memory and database together, so that the database never ends
	// up with an older version than memory. It is taken before mu.
	writeMu sync.Mutex

	// mu guards the fields below. entries are replaced on every fetch; only their bookkeeping fields
	// (lastUsed, usedDirty, lastError, lastErrorAt, failures) change in place, under mu.
	mu       sync.Mutex
	entries  map[address.Domain]*entry
	backoffs map[backoffKey]failure
	flights  map[address.Domain]*flight
	stats    Stats
	// seq counts the writes of entries (entry.seq). sharedErr is the error of the last call to the shared
	// store in cluster mode, nil when it answered: while it is set, deliveries do not wait on the shared
	// store, and the next successful sync clears it.
	seq       uint64
	sharedErr error
	// flushSeq holds, in cluster mode, the seq at which this node last flushed each domain: a read of the
	// shared store begun before it (seq then lower) may have returned the flushed record, which must not be
	// put back. A sync forgets the flushes made before it began.
	flushSeq map[address.Domain]uint64
}

// entry is one cached policy.
type entry struct {
	domain    address.Domain
	id        string
	policy    *mtasts.Policy
	raw       []byte
	fetched   time.Time
	expires   time.Time
	lastUsed  time.Time
	usedDirty bool // lastUsed not yet written to the database
	// sharedDirty: in cluster mode, the shared store may not hold this version yet (not yet written, or the
	// write failed). seq orders the writes of this cache (Cache.seq when the entry was last saved).
	sharedDirty bool
	seq         uint64

	lastError   string
	lastErrorAt time.Time
	failures    int // consecutive refresh failures
}

type backoffKey struct {
	domain address.Domain
	id     string
}

type failure struct {
	until  time.Time
	result tlsrpt.ResultType
	detail string
}

type flight struct {
	done chan struct{}
	res  Lookup
	err  error
	// waiters counts the callers sharing this flight and joined is closed (and replaced) when one joins,
	// under Cache.mu: tests wait on it for callers to line up.
	waiters int
	joined  chan struct{}
}

// New opens the cache: it migrates its table and loads every stored policy into memory.
func New(ctx context.Context, o Options) (*Cache, error) {
	if o.Store == nil && o.DB != nil {
		o.Store = SQLiteStore{DB: o.DB}
	}
	if o.Store == nil || o.Resolver == nil || o.Fetcher == nil {
		return nil, errors.New("mtastscache: Options.Store (or DB), Resolver and Fetcher are required")
	}
	if o.Local != nil {
		if _, ok := o.Store.(SharedStore); !ok || o.Node == "" {
			return nil, errors.New("mtastscache: Options.Local needs a SharedStore and Node")
		}
	}
	c := &Cache{
		store:           o.Store,
		resolver:        o.Resolver,
		fetcher:         o.Fetcher,
		now:             o.Now,
		log:             o.Logger,
		rand:            o.Rand,
		failureBackoff:  o.FailureBackoff,
		refreshAge:      o.RefreshAge,
		unusedAfter:     o.UnusedAfter,
		refreshInterval: o.RefreshInterval,
		local:           o.Local,
		node:            o.Node,
		syncInterval:    o.SyncInterval,
		entries:         map[address.Domain]*entry{},
		backoffs:        map[backoffKey]failure{},
		flushSeq:        map[address.Domain]uint64{},
		flights:         map[address.Domain]*flight{},
		stats:           Stats{FetchFailures: map[tlsrpt.ResultType]uint64{}},
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.failureBackoff <= 0 {
		c.failureBackoff = DefaultFailureBackoff
	}
	if c.refreshAge <= 0 {
		c.refreshAge = DefaultRefreshAge
	}
	if c.unusedAfter <= 0 {
		c.unusedAfter = DefaultUnusedAfter
	}
	if c.refreshInterval <= 0 {
		c.refreshInterval = DefaultRefreshInterval
	}
	if c.syncInterval <= 0 {
		c.syncInterval = DefaultSyncInterval
	}
	if c.local != nil {
		if err := c.startCluster(ctx); err != nil {
			return nil, err
		}
		return c, nil
	}
	if err := o.Store.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("mtastscache: %w", err)
	}
	// RFC 8461 Section 10.2 (STS-63): the cache survives restarts.
	entries, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		c.entries[e.domain] = e
	}
	return c, nil
}

// ErrDiscoveryTemporary is returned by Get when the _mta-sts TXT lookup failed temporarily (SERVFAIL,
// timeout) and no unexpired policy is cached: whether the domain has a policy is unknown, so the delivery
// must wait rather than go out as though it had none.
var ErrDiscoveryTemporary = errors.New("mtastscache: MTA-STS discovery failed temporarily")

// Get returns the policy in force for a delivery to domain, doing the checks of RFC 8461 Section 5.1 step 1:
// a TXT lookup on every call, and a fetch when the id is new or the cached policy expired.
//
// When the resolver has the TXT answer in its cache (dnsx.CachedTXTResolver) and it names the id of the
// unexpired cached policy, Get answers at once, in the caller's goroutine: the warm path of every delivery.
// Otherwise concurrent calls for one domain share one TXT lookup and fetch. The error is non-nil when ctx ends first,
// and (wrapping ErrDiscoveryTemporary) when DNS failed temporarily with nothing cached; every other DNS and
// HTTPS failure is described by the Lookup, because none of them stops a delivery (RFC 8461 Section 3.3).
func (c *Cache) Get(ctx context.Context, domain address.Domain) (Lookup, error) {
	if domain.IsZero() {
		return Lookup{}, errors.New("mtastscache: empty domain")
	}
	if l, ok := c.current(domain); ok {
		return l, nil
	}
	c.mu.Lock()
	f, ok := c.flights[domain]
	if !ok {
		f = &flight{done: make(chan struct{}), joined: make(chan struct{})}
		c.flights[domain] = f
		// The shared work must not fail because the first caller gave up: a cancelled fetch would count
		// as a fetch failure and start a back-off. The resolver and fetcher time out on their own.
		work := context.WithoutCancel(ctx)
		go func() {
			f.res, f.err = c.lookup(work, domain)
			c.mu.Lock()
			delete(c.flights, domain)
			c.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	close(f.joined)
	f.joined = make(chan struct{})
	c.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return Lookup{}, fmt.Errorf("mtastscache: %s: %w", domain, ctx.Err())
	}
	if f.err != nil {
		return Lookup{}, f.err
	}
	if f.res.Policy != nil {
		c.markUsed(domain, f.res.ID)
	}
	return f.res, nil
}

// current is Get's warm path: the TXT record, from the resolver's cache only, names the id of the unexpired
// cached policy, which is then served (and marked used) as lookup would serve it. Anything else (no cached
// answer, a failed or changed record, an expired policy) is left to lookup.
func (c *Cache) current(domain address.Domain) (Lookup, bool) {
	r, ok := c.resolver.(dnsx.CachedTXTResolver)
	if !ok {
		return Lookup{}, false
	}
	// RFC 8461 Section 3.4 (STS-62): the exact Policy Domain, as discover asks it.
	txts, _, err := r.CachedTXT("_mta-sts." + domain.FQDN())
	if err != nil {
		return Lookup{}, false
	}
	rec, err := mtasts.SelectRecord(txts)
	if err != nil {
		return Lookup{}, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[domain]
	// RFC 8461 Section 5.1 step 1 (STS-55): same id, unexpired policy (STS-54): no fetch.
	if e == nil || e.id != rec.ID || !now.Before(e.expires) {
		return Lookup{}, false
	}
	if now.After(e.lastUsed) {
		e.lastUsed = now
		e.usedDirty = true
	}
	return c.serve(e, SourceCache, "", ""), true
}

// lookup is Get's algorithm for one flight.
func (c *Cache) lookup(ctx context.Context, domain address.Domain) (Lookup, error) {
	rec, txtErr := c.discover(ctx, domain)
	now := c.now()
	cached := c.unexpired(domain, now)

	if txtErr != nil {
		// RFC 8461 Section 3.1: no usable record means no policy is available, but Section 5.1 step 1 and
		// the note in Section 3.1 keep a cached, unexpired policy in force (STS-16), whatever the reason:
		// NXDOMAIN, no record, several records, an invalid record, or a temporary DNS failure.
		if cached != nil {
			// Spec: STS-93 counts a failed TXT discovery as a failure to fetch the policy; RFC 8460 has no
			// better result type for it than sts-policy-fetch-error.
			return c.serve(cached, SourceCache, tlsrpt.ResultSTSPolicyFetchError, txtErr.Error()), nil
		}
		// Spec: STS-19: a temporary TXT failure with nothing cached is never read as "no policy": the domain
		// may publish enforce, and an attacker who can make DNS fail must not get plain-text delivery. The
		// attempt is deferred (mox does the same); nothing negative is cached, so the next attempt looks again.
		if errors.Is(txtErr, dnsx.ErrTemporary) {
			return Lookup{}, fmt.Errorf("%w: %s: %w", ErrDiscoveryTemporary, domain, txtErr)
		}
		// RFC 8461 Section 3.1 (STS-12, STS-13, STS-18): no record and no cache means no policy, and no fetch.
		return Lookup{Source: SourceNone, FailureDetail: txtErr.Error()}, nil
	}

	// RFC 8461 Section 5.1 step 1 / Section 3 (STS-55): the id is unchanged and the policy has not expired,
	// so no fetch is needed.
	if cached != nil && cached.id == rec.ID {
		return c.serve(cached, SourceCache, "", ""), nil
	}

	// A new id (STS-56, STS-84), an expired policy (STS-54) or none cached: fetch, unless a fetch for this
	// very id failed less than FailureBackoff ago. RFC 8461 Section 3.3: the back-off is per policy id, so a
	// changed id is fetched at once (STS-35).
	// Cluster mode: another node may have fetched the policy under this id already.
	if c.local != nil {
		if e := c.fromShared(ctx, domain, rec.ID, now); e != nil {
			return c.serve(e, SourceCache, "", ""), nil
		}
	}
	key := backoffKey{domain, rec.ID}
	if f, ok := c.backingOff(key, now); ok {
		return c.failed(cached, f), nil
	}
	pol, raw, err := c.fetch(ctx, domain)
	if err != nil {
		return c.failed(cached, c.startBackoff(key, err)), nil
	}
	// RFC 8461 Section 3.3 (STS-57): only a successfully fetched, valid policy replaces the cached one; then
	// it replaces it whatever its mode (STS-61: mode none is how a domain withdraws its policy).
	fresh := newEntry(domain, rec.ID, pol, raw, c.now())
	fresh.lastUsed = fresh.fetched // fetched for a delivery, so in use, and persisted as such at once
	e := c.put(ctx, fresh)
	return c.serve(e, SourceFetched, "", ""), nil
}

// failed is the Lookup after a failed (or backed-off) fetch.
func (c *Cache) failed(cached *entry, f failure) Lookup {
	if cached != nil {
		// RFC 8461 Section 3.3 (STS-57): keep applying the unexpired cached policy.
		return c.serve(cached, SourceCache, f.result, f.detail)
	}
	// RFC 8461 Section 3.3 (STS-34): no policy could be fetched and none is cached: deliver as though the
	// domain had no MTA-STS, and report the failure (STS-92).
	return Lookup{Source: SourceNone, Failure: f.result, FailureDetail: f.detail}
}

// serve builds the Lookup for entry e.
func (c *Cache) serve(e *entry, src Source, result tlsrpt.ResultType, detail string) Lookup {
	if e.policy.Mode == mtasts.ModeNone {
		// RFC 8461 Section 6 (STS-93): failures are not reported while the cached policy is mode none.
		result = ""
	}
	return Lookup{
		Policy:        e.policy,
		ID:            e.id,
		Fetched:       e.fetched,
		Expires:       e.expires,
		Source:        src,
		Failure:       result,
		FailureDetail: detail,
	}
}

// discover looks up and selects the _mta-sts TXT record of domain.
func (c *Cache) discover(ctx context.Context, domain address.Domain) (mtasts.Record, error) {
	// RFC 8461 Section 3.4 (STS-62): the record is looked up for the exact Policy Domain, never a parent.
	name := "_mta-sts." + domain.FQDN()
	txts, _, err := c.resolver.LookupTXT(ctx, name)
	if err != nil {
		return mtasts.Record{}, fmt.Errorf("mtastscache: TXT %s: %w", name, err)
	}
	// RFC 8461 Section 3.1: the id (first id= if repeated, STS-10) comes from mtasts; the resolver has
	// already joined each record's strings without separators (STS-14).
	rec, err := mtasts.SelectRecord(txts)
	if err != nil {
		return mtasts.Record{}, fmt.Errorf("mtastscache: TXT %s: %w", name, err)
	}
	return rec, nil
}

// fetch fetches domain's policy, counting the attempt and its failure.
func (c *Cache) fetch(ctx context.Context, domain address.Domain) (*mtasts.Policy, []byte, error) {
	c.mu.Lock()
	c.stats.Fetches++
	c.mu.Unlock()
	pol, raw, err := c.fetcher.Fetch(ctx, domain)
	if err == nil && pol == nil {
		err = fmt.Errorf("%w: fetcher returned no policy", mtasts.ErrPolicyInvalid)
	}
	if err != nil {
		c.mu.Lock()
		c.stats.FetchFailures[tlspolicy.STSFetchResult(err)]++
		c.mu.Unlock()
		return nil, nil, fmt.Errorf("mtastscache: fetch policy for %s: %w", domain, err)
	}
	return pol, raw, nil
}

func (c *Cache) backingOff(key backoffKey, now time.Time) (failure, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.backoffs[key]
	if !ok {
		return failure{}, false
	}
	if !now.Before(f.until) {
		delete(c.backoffs, key)
		return failure{}, false
	}
	return f, true
}

func (c *Cache) startBackoff(key backoffKey, err error) failure {
	f := failure{until: c.now().Add(c.failureBackoff), result: tlspolicy.STSFetchResult(err), detail: err.Error()}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.backoffs[key] = f
	return f
}

// unexpired returns domain's cached entry if it has not expired at now, else nil.
func (c *Cache) unexpired(domain address.Domain, now time.Time) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[domain]
	// RFC 8461 Section 3.3 and Section 5 (STS-54): an expired policy is not valid and is never applied.
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	return e
}

func (c *Cache) markUsed(domain address.Domain, id string) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[domain]; e != nil && e.id == id && now.After(e.lastUsed) {
		e.lastUsed = now
		e.usedDirty = true
	}
}

// newEntry makes the cache entry for a policy fetched at now.
func newEntry(domain address.Domain, id string, pol *mtasts.Policy, raw []byte, now time.Time) *entry {
	return &entry{
		domain:  domain,
		id:      id,
		policy:  pol,
		raw:     raw,
		fetched: now,
		// RFC 8461 Section 3.2 (STS-53, STS-58): cached for max_age from this fetch; the parser has already
		// capped max_age at 31557600 seconds.
		expires: now.Add(pol.MaxAge),
		// lastUsed stays zero: put keeps the old entry's, and Get marks the entry used when it serves it,
		// so that a refresh alone never makes a policy look used.
	}
}

// put stores e, replacing the domain's entry unless that one was fetched later, writing through to the
// database. It returns the entry now in force.
func (c *Cache) put(ctx context.Context, e *entry) *entry {
	got := c.install(ctx, e)
	if got == e {
		// Cluster mode: outside writeMu, so that a shared store that does not answer holds only this call.
		c.push(ctx, e)
	}
	return got
}

// install is put's part under writeMu: memory and the local database (or, on a single node, the store).
func (c *Cache) install(ctx context.Context, e *entry) *entry {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	old := c.entries[e.domain]
	if old != nil && old.lastUsed.After(e.lastUsed) {
		e.lastUsed = old.lastUsed
	}
	c.mu.Unlock()
	if old != nil && old.fetched.After(e.fetched) {
		return old
	}
	if err := c.save(ctx, e); err != nil {
		// The fetched policy is still applied from memory: losing persistence must not weaken delivery.
		c.log.Error("mtastscache: cannot persist policy", "domain", e.domain.String(), "err", err)
	}
	c.mu.Lock()
	c.entries[e.domain] = e
	for k := range c.backoffs {
		if k.domain == e.domain {
			delete(c.backoffs, k)
		}
	}
	c.mu.Unlock()
	return e
}
