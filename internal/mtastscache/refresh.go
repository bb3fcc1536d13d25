package mtastscache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Entry is a cached policy as the admin interfaces show it.
type Entry struct {
	Domain  address.Domain
	ID      string
	Mode    mtasts.Mode
	MaxAge  time.Duration
	MX      []string
	Fetched time.Time
	Expires time.Time
	// LastUsed is when a delivery last used the policy (zero: never since it was fetched by an admin).
	LastUsed time.Time
	// LastError is the last refresh failure; it is cleared by a successful fetch.
	LastError           string
	LastErrorAt         time.Time
	ConsecutiveFailures int
	// Policy is the policy text as fetched.
	Policy string
}

// Expired reports whether the policy has expired at now and so is no longer applied.
func (e Entry) Expired(now time.Time) bool { return !now.Before(e.Expires) }

// RefreshDue refreshes every policy in use (served within UnusedAfter) that is older than RefreshAge or past
// half its max_age, and drops expired policies that are no longer in use. It returns how many refreshes
// succeeded. Refresh failures are logged and counted, not returned: the error reports only database
// failures and the end of ctx.
func (c *Cache) RefreshDue(ctx context.Context) (int, error) {
	var errs []error
	if err := c.saveUsage(ctx); err != nil {
		errs = append(errs, err)
	}
	if c.local != nil {
		// Cluster mode: merge what the other nodes wrote, then refresh only under the lease, so that one node
		// at a time fetches for the cluster.
		// While the shared store does not answer, every node refreshes its own policies, as a single node
		// would: fetching twice is harmless, letting an enforce policy lapse is not (RFC 8461 Section 10.2).
		if err := c.sync(ctx); err != nil {
			errs = append(errs, err)
		} else if holder, err := c.holdsLease(ctx); err != nil {
			errs = append(errs, err)
		} else if !holder {
			return 0, errors.Join(errs...)
		}
	}
	now := c.now()
	var due, unused []address.Domain
	c.mu.Lock()
	for k, f := range c.backoffs {
		if !now.Before(f.until) {
			delete(c.backoffs, k) // keeps the map from growing with domains that are never retried
		}
	}
	for d, e := range c.entries {
		if now.Sub(e.lastUsed) >= c.unusedAfter {
			if !now.Before(e.expires) {
				unused = append(unused, d)
			}
			continue
		}
		if e.failures > 0 && now.Sub(e.lastErrorAt) < c.failureBackoff {
			continue
		}
		// RFC 8461 Section 10.2 (STS-59): refresh before expiry, not at it ("daily" is the suggestion),
		// fetching even when the id is unchanged, so that a policy in use never lapses.
		age := now.Sub(e.fetched)
		if age >= c.refreshAge || age >= e.policy.MaxAge/2 {
			due = append(due, d)
		}
	}
	c.mu.Unlock()

	for _, d := range unused {
		if err := c.dropUnused(ctx, d, now); err != nil {
			errs = append(errs, err)
		}
	}

	slices.SortFunc(due, func(a, b address.Domain) int { return strings.Compare(a.String(), b.String()) })
	n := 0
	for _, d := range due {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("mtastscache: refresh: %w", err))
			break
		}
		_, err := c.refresh(ctx, d)
		if err == nil {
			n++
			continue
		}
		mode, failures := c.failureState(d)
		// RFC 8461 Section 10.2 (STS-60): alert administrators when refreshes fail, unless the cached policy
		// is mode none, whose failure changes nothing for delivery.
		level := slog.LevelWarn
		if mode == mtasts.ModeNone {
			level = slog.LevelInfo
		}
		c.log.Log(ctx, level, "mtastscache: policy refresh failed", "domain", d.String(),
			"sts_mode", string(mode), "result_type", string(tlspolicy.STSFetchResult(err)),
			"consecutive_failures", failures, "err", err)
	}
	return n, errors.Join(errs...)
}

// dropUnused removes domain's policy if it is still expired and unused at now.
func (c *Cache) dropUnused(ctx context.Context, domain address.Domain, now time.Time) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	e := c.entries[domain]
	stillUnused := e != nil && now.Sub(e.lastUsed) >= c.unusedAfter && !now.Before(e.expires)
	c.mu.Unlock()
	if !stillUnused {
		return nil
	}
	if err := c.remove(ctx, domain); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.entries, domain)
	c.mu.Unlock()
	return nil
}

func (c *Cache) failureState(domain address.Domain) (mtasts.Mode, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[domain]
	if e == nil {
		return "", 0
	}
	return e.policy.Mode, e.failures
}

// refresh looks up domain's TXT record and fetches its policy, whatever the cached id and any back-off.
func (c *Cache) refresh(ctx context.Context, domain address.Domain) (*entry, error) {
	c.mu.Lock()
	c.stats.Refreshes++
	c.mu.Unlock()
	rec, err := c.discover(ctx, domain)
	if err == nil {
		var (
			pol *mtasts.Policy
			raw []byte
		)
		pol, raw, err = c.fetch(ctx, domain)
		if err == nil {
			return c.put(ctx, newEntry(domain, rec.ID, pol, raw, c.now())), nil
		}
		c.startBackoff(backoffKey{domain, rec.ID}, err)
	}
	// RFC 8461 Section 3.3 and 10.2: a failed refresh keeps the cached policy; only the failure is recorded.
	c.refreshFailed(ctx, domain, err)
	return nil, err
}

func (c *Cache) refreshFailed(ctx context.Context, domain address.Domain, err error) {
	if e := c.recordFailure(ctx, domain, err); e != nil {
		c.push(ctx, e)
	}
}

// recordFailure is refreshFailed's part under writeMu; it returns the entry it changed, if any.
func (c *Cache) recordFailure(ctx context.Context, domain address.Domain, err error) *entry {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	c.stats.RefreshFailures++
	e := c.entries[domain]
	if e != nil {
		e.failures++
		e.lastError = err.Error()
		e.lastErrorAt = c.now()
	}
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	if err := c.save(ctx, e); err != nil {
		c.log.Error("mtastscache: cannot persist refresh failure", "domain", domain.String(), "err", err)
	}
	return e
}

// Run calls RefreshDue about every RefreshInterval, with jitter, until ctx ends; then it saves the last-used
// times and returns nil. In cluster mode it also merges the shared store into the cache every SyncInterval.
func (c *Cache) Run(ctx context.Context) error {
	// The first round comes after a random part of the interval, so that nodes started together spread out.
	t := time.NewTimer(time.Duration(c.randFloat() * float64(c.refreshInterval)))
	defer t.Stop()
	var sync <-chan time.Time
	if c.local != nil {
		tick := time.NewTicker(c.syncInterval)
		defer tick.Stop()
		sync = tick.C
	}
	for {
		select {
		case <-ctx.Done():
			if err := c.saveUsage(context.WithoutCancel(ctx)); err != nil {
				c.log.Error("mtastscache: saving last-used times", "err", err)
			}
			return nil
		case <-sync:
			// sync logs when the shared store stops and starts answering (sharedDown, sharedUp).
			uctx, cancel := context.WithTimeout(ctx, syncTimeout)
			err := c.saveUsage(uctx)
			cancel()
			if err == nil {
				if err := c.sync(ctx); err != nil && !c.sharedIsDown() && ctx.Err() == nil {
					c.log.Error("mtastscache: sync", "err", err)
				}
			}
			continue
		case <-t.C:
		}
		if _, err := c.RefreshDue(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("mtastscache: refresh round", "err", err)
		}
		// ±20% jitter.
		t.Reset(time.Duration((0.8 + 0.4*c.randFloat()) * float64(c.refreshInterval)))
	}
}

func (c *Cache) randFloat() float64 {
	if c.rand == nil {
		return rand.Float64()
	}
	c.randMu.Lock()
	defer c.randMu.Unlock()
	return c.rand.Float64()
}

// List returns every cached policy, expired ones included, sorted by domain.
func (c *Cache) List(ctx context.Context) ([]Entry, error) {
	c.mu.Lock()
	out := make([]Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e.view())
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Domain.String(), b.Domain.String()) })
	return out, nil
}

// Show returns domain's cached policy, or an error wrapping ErrNotCached.
func (c *Cache) Show(ctx context.Context, domain address.Domain) (Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[domain]
	if e == nil {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotCached, domain)
	}
	return e.view(), nil
}

// Refresh looks up domain's TXT record and fetches its policy now, ignoring any back-off, and caches it.
// The domain need not be cached yet. On failure the cached policy, if any, stays.
func (c *Cache) Refresh(ctx context.Context, domain address.Domain) (Entry, error) {
	e, err := c.refresh(ctx, domain)
	if err != nil {
		return Entry{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.view(), nil
}

// Flush removes domain's cached policy and forgets its fetch back-offs; the next delivery discovers the
// policy afresh. It returns an error wrapping ErrNotCached if there was nothing cached.
//
// In cluster mode the flush is recorded in the shared store with the time it was made, in the same
// transaction as the removal, so that no node brings the policy back from the copy it held then (one that
// was stopped or cut off): each drops it at its next sync. A flush the shared store cannot record fails and
// changes nothing.
func (c *Cache) Flush(ctx context.Context, domain address.Domain) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	_, ok := c.entries[domain]
	for k := range c.backoffs {
		if k.domain == domain {
			delete(c.backoffs, k)
		}
	}
	c.mu.Unlock()
	if c.local != nil {
		sctx, cancel := context.WithTimeout(ctx, sharedTimeout)
		held, err := c.store.(SharedStore).Flush(sctx, domain, c.now())
		cancel()
		if err != nil {
			c.sharedDown(err)
			return fmt.Errorf("mtastscache: flush %s: shared store: %w", domain, err)
		}
		if err := c.local.Delete(ctx, domain); err != nil {
			return fmt.Errorf("mtastscache: local copy: delete %s: %w", domain, err)
		}
		c.mu.Lock()
		delete(c.entries, domain)
		c.mu.Unlock()
		if !ok && !held {
			return fmt.Errorf("%w: %s", ErrNotCached, domain)
		}
		return nil
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotCached, domain)
	}
	if err := c.remove(ctx, domain); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.entries, domain)
	c.mu.Unlock()
	return nil
}

// Stats returns the counters and the number of cached policies by mode.
func (c *Cache) Stats() Stats {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.FetchFailures = make(map[tlsrpt.ResultType]uint64, len(c.stats.FetchFailures))
	for k, v := range c.stats.FetchFailures {
		s.FetchFailures[k] = v
	}
	s.Entries = map[mtasts.Mode]int{}
	for _, e := range c.entries {
		if now.Before(e.expires) {
			s.Entries[e.policy.Mode]++
		} else {
			s.Expired++
		}
	}
	return s
}

// view returns e for the admin interfaces; c.mu must be held.
func (e *entry) view() Entry {
	return Entry{
		Domain:              e.domain,
		ID:                  e.id,
		Mode:                e.policy.Mode,
		MaxAge:              e.policy.MaxAge,
		MX:                  slices.Clone(e.policy.MX),
		Fetched:             e.fetched,
		Expires:             e.expires,
		LastUsed:            e.lastUsed,
		LastError:           e.lastError,
		LastErrorAt:         e.lastErrorAt,
		ConsecutiveFailures: e.failures,
		Policy:              string(e.raw),
	}
}
