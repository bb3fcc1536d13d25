package mtastscache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// Cluster mode. The cache of every node is the one policy cache of the cluster, in the shared store: a policy
// is fetched by the first node that needs it, and the others read it from there rather than fetching it
// again (the TXT id is still checked by each node at each use, RFC 8461 Section 5.1). Only the node holding
// the refresh lease refreshes policies proactively and drops unused ones; every node merges what the others
// wrote at each sync. Each node keeps a local copy of the cache (Options.Local), written with every change,
// from which it starts when the shared store does not answer: a node never forgets a policy, enforce above
// all (RFC 8461 Section 10), because the database is down.

// refreshLease is the name of the lease whose holder refreshes the cluster's policies.
const refreshLease = "mtasts-refresh"

// sharedTimeout bounds one read of the shared store in the delivery path: a database that does not answer
// must not hold a delivery, which then fetches the policy itself.
const sharedTimeout = 2 * time.Second

// syncTimeout bounds one sync with the shared store.
const syncTimeout = 10 * time.Second

// DefaultSyncInterval is how often a cluster node merges the shared store into its cache.
const DefaultSyncInterval = time.Minute

// startCluster migrates the local copy and the shared store and loads both, the newest record of each domain
// winning; records the shared store lacks or holds older (fetched while it was down) are written to it.
func (c *Cache) startCluster(ctx context.Context) error {
	if err := c.local.Migrate(ctx); err != nil {
		return fmt.Errorf("mtastscache: local copy: %w", err)
	}
	local, err := c.loadFrom(ctx, c.local)
	if err != nil {
		return fmt.Errorf("mtastscache: local copy: %w", err)
	}
	for _, e := range local {
		e.sharedDirty = true // until the shared store is known to hold it
		c.entries[e.domain] = e
	}
	if err := c.sync(ctx); err != nil {
		c.log.Warn("mtastscache: shared policy cache unreachable at start: serving this node's local copy", "policies", len(local), "err", err)
	}
	return nil
}

// errSharedDown is returned for a write to the shared store skipped because it did not answer last time.
var errSharedDown = errors.New("shared store not answering since its last failure")

// sharedIsDown reports whether the last call to the shared store failed (and no sync has succeeded since).
func (c *Cache) sharedIsDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sharedErr != nil
}

// sharedDown records that the shared store failed to answer: until a sync succeeds, deliveries neither read
// from it nor write to it, so that a database that hangs costs at most one sharedTimeout, once, and not one
// per new domain (the database is not in the mail path).
func (c *Cache) sharedDown(err error) {
	c.mu.Lock()
	was := c.sharedErr
	c.sharedErr = err
	c.mu.Unlock()
	if was == nil {
		c.log.Warn("mtastscache: shared policy cache unreachable: serving and fetching policies without it until it answers", "err", err)
	}
}

// sharedUp records a successful sync.
func (c *Cache) sharedUp() {
	c.mu.Lock()
	was := c.sharedErr
	c.sharedErr = nil
	c.mu.Unlock()
	if was != nil {
		c.log.Info("mtastscache: shared policy cache reachable again")
	}
}

// SharedErr returns, in cluster mode, why the shared store did not answer the last call made to it, or nil
// when it did (always nil on a single node).
func (c *Cache) SharedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sharedErr
}

// sync merges the shared store into the cache, both ways: a record fetched later than the cached one replaces
// it (and the local copy's), last-used times and refresh failures are merged, a record the cache holds and
// the shared store does not (a write that failed while it was down) is written to it, and one it no longer
// holds (flushed or dropped on another node) is removed unless this node wrote it since. A record fetched
// before its domain was last flushed (on any node, while this one was stopped or cut off) is removed and never
// written back: the next use fetches the policy afresh.
//
// Only the merge in memory and the local copy takes writeMu: the reads and writes of the shared store are
// made without it, so that the cache's writes (a policy fetched for a delivery) never wait on the network.
func (c *Cache) sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	var localErrs []error
	sharedErr := func() error {
		if !c.sharedMigrated {
			if err := c.store.Migrate(ctx); err != nil {
				return fmt.Errorf("mtastscache: shared store: %w", err)
			}
			c.sharedMigrated = true
		}
		c.mu.Lock()
		start := c.seq
		c.mu.Unlock()
		shared, err := c.loadFrom(ctx, c.store)
		if err != nil {
			return fmt.Errorf("mtastscache: shared store: %w", err)
		}
		flushes, err := c.store.(SharedStore).Flushes(ctx)
		if err != nil {
			return fmt.Errorf("mtastscache: shared store: flushes: %w", err)
		}
		var toShared []*entry
		toShared, localErrs = c.merge(ctx, shared, flushes, start)
		var errs []error
		for _, e := range toShared {
			if err := c.pushRecord(ctx, e); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}()
	switch {
	case sharedErr == nil:
		c.sharedUp()
	case !errors.Is(ctx.Err(), context.Canceled):
		// A sync cut short by the caller (shutdown) says nothing about the shared store.
		c.sharedDown(sharedErr)
	}
	return errors.Join(append(localErrs, sharedErr)...)
}

// merge is sync's part under writeMu: it merges shared, the shared store as read after this cache's write
// start, into the cache and the local copy, and returns the entries to write to the shared store. An entry
// written since start is newer than what was read and is neither removed nor marked as held there. An entry
// fetched before its domain's flush time in flushes is removed: it is what an administrator flushed.
func (c *Cache) merge(ctx context.Context, shared []*entry, flushes map[address.Domain]time.Time, start uint64) ([]*entry, []error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	seen := map[address.Domain]bool{}
	var toLocal, toShared []*entry
	var gone []address.Domain
	c.mu.Lock()
	for _, s := range shared {
		seen[s.domain] = true
		e := c.entries[s.domain]
		switch {
		case e == nil || s.fetched.After(e.fetched):
			if e != nil && e.lastUsed.After(s.lastUsed) {
				s.lastUsed, s.usedDirty = e.lastUsed, true
			}
			c.entries[s.domain] = s
			toLocal = append(toLocal, s)
		case e.fetched.After(s.fetched) || e.id != s.id:
			toShared = append(toShared, e)
		default:
			changed := false
			if s.lastUsed.After(e.lastUsed) {
				e.lastUsed, changed = s.lastUsed, true
			} else if e.lastUsed.After(s.lastUsed) {
				e.usedDirty = true
			}
			if s.lastErrorAt.After(e.lastErrorAt) {
				e.lastError, e.lastErrorAt, e.failures, changed = s.lastError, s.lastErrorAt, s.failures, true
			}
			if e.seq <= start {
				e.sharedDirty = false
			} else if e.sharedDirty {
				toShared = append(toShared, e)
			}
			if changed {
				toLocal = append(toLocal, e)
			}
		}
	}
	type flushed struct {
		domain           address.Domain
		fetched, flushed time.Time
	}
	var dropped []flushed
	for d, e := range c.entries {
		f, ok := flushes[d]
		switch {
		case seen[d]:
		case ok && e.fetched.Before(f):
			gone = append(gone, d)
			dropped = append(dropped, flushed{d, e.fetched, f})
		case e.sharedDirty:
			toShared = append(toShared, e)
		case e.seq <= start:
			gone = append(gone, d)
		}
	}
	for _, d := range gone {
		delete(c.entries, d)
	}
	c.mu.Unlock()
	for _, f := range dropped {
		c.log.Info("mtastscache: dropping this node's copy of a policy flushed since it was fetched",
			"domain", f.domain.String(), "fetched", f.fetched, "flushed", f.flushed)
	}

	var errs []error
	for _, e := range toLocal {
		if err := c.local.Save(ctx, c.record(e)); err != nil {
			errs = append(errs, fmt.Errorf("mtastscache: local copy: save %s: %w", e.domain, err))
		}
	}
	for _, d := range gone {
		if err := c.local.Delete(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("mtastscache: local copy: delete %s: %w", d, err))
		}
	}
	return toShared, errs
}

// fromShared returns the policy another node fetched for domain under id, if the shared store holds one
// that has not expired at now, and puts it in the cache; nil otherwise (also when the store does not answer:
// the caller then fetches the policy itself). It does not ask a shared store that failed to answer since the
// last sync, and waits at most sharedTimeout for one that stops answering now.
func (c *Cache) fromShared(ctx context.Context, domain address.Domain, id string, now time.Time) *entry {
	if c.sharedIsDown() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	r, ok, err := c.store.(SharedStore).Get(ctx, domain)
	if err != nil {
		c.sharedDown(err)
		return nil
	}
	if !ok || r.ID != id || !now.Before(r.Expires) {
		return nil
	}
	pol, err := mtasts.ParsePolicy([]byte(r.Policy))
	if err != nil {
		return nil
	}
	e := &entry{domain: domain, id: r.ID, policy: pol, raw: []byte(r.Policy), fetched: r.Fetched, expires: r.Expires,
		lastUsed: r.LastUsed, lastError: r.LastRefreshError, lastErrorAt: r.LastRefreshAt, failures: r.Failures}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	old := c.entries[domain]
	if old != nil && !e.fetched.After(old.fetched) {
		c.mu.Unlock()
		if old.id == id && now.Before(old.expires) {
			return old
		}
		return nil
	}
	if old != nil && old.lastUsed.After(e.lastUsed) {
		e.lastUsed = old.lastUsed
	}
	c.seq++
	e.seq = c.seq
	c.entries[domain] = e
	c.mu.Unlock()
	if err := c.local.Save(ctx, c.record(e)); err != nil {
		c.log.Error("mtastscache: local copy: cannot persist policy", "domain", domain.String(), "err", err)
	}
	return e
}

// holdsLease reports whether this node holds (or has just taken) the refresh lease, which lasts three
// refresh intervals: a node that stops is replaced by another within that time.
func (c *Cache) holdsLease(ctx context.Context) (bool, error) {
	now := c.now()
	ok, err := c.store.(SharedStore).Lease(ctx, refreshLease, c.node, now, now.Add(3*c.refreshInterval))
	if err != nil {
		return false, fmt.Errorf("mtastscache: refresh lease: %w", err)
	}
	return ok, nil
}

// SyncDue merges the shared store into the cache (cluster mode; a no-op on a single node).
func (c *Cache) SyncDue(ctx context.Context) error {
	if c.local == nil {
		return nil
	}
	return c.sync(ctx)
}
