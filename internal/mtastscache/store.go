package mtastscache

import (
	"context"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// Store persists the cached policies so that they survive restarts (RFC 8461 Section 10.2). Two
// implementations exist: SQLiteStore, in a node's embedded database, and PostgresStore, in the database a
// cluster shares. Both pass the same contract tests (store_test.go).
type Store interface {
	// Migrate brings the store's schema up to date (versioned migrations, run at start).
	Migrate(ctx context.Context) error
	// Load returns every stored policy, in no particular order.
	Load(ctx context.Context) ([]Record, error)
	// Save writes r, replacing the domain's record.
	Save(ctx context.Context, r Record) error
	// Used records that domain's policy was used at at; it never moves the time backwards.
	Used(ctx context.Context, domain address.Domain, at time.Time) error
	// Delete removes domain's record, if any.
	Delete(ctx context.Context, domain address.Domain) error
}

// Record is one stored policy. Policy is the body as fetched: the parsed form is rebuilt from it at load, so
// a stricter parser drops what it no longer accepts. Mode and MaxAge are copies for people reading the
// database. Zero times mean "never".
type Record struct {
	Domain           string
	ID               string
	Policy           string
	Mode             mtasts.Mode
	MaxAge           time.Duration
	Fetched          time.Time
	Expires          time.Time
	LastUsed         time.Time
	LastRefreshAt    time.Time
	LastRefreshError string
	Failures         int
}

func toDB(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromDB(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// load reads every stored policy. A record whose domain or policy no longer parses is skipped with a
// warning; the next successful fetch for that domain overwrites it.
func (c *Cache) load(ctx context.Context) ([]*entry, error) {
	return c.loadFrom(ctx, c.store)
}

// loadFrom reads every policy st holds, as load does.
func (c *Cache) loadFrom(ctx context.Context, st Store) ([]*entry, error) {
	recs, err := st.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("mtastscache: load: %w", err)
	}
	var out []*entry
	for _, r := range recs {
		domain, err := address.ParseDomain(r.Domain)
		if err != nil {
			c.log.Warn("mtastscache: dropping stored policy with invalid domain", "domain", r.Domain, "err", err)
			continue
		}
		pol, err := mtasts.ParsePolicy([]byte(r.Policy))
		if err != nil {
			c.log.Warn("mtastscache: dropping stored policy that no longer parses", "domain", r.Domain, "err", err)
			continue
		}
		out = append(out, &entry{
			domain:      domain,
			id:          r.ID,
			policy:      pol,
			raw:         []byte(r.Policy),
			fetched:     r.Fetched,
			expires:     r.Expires,
			lastUsed:    r.LastUsed,
			lastErrorAt: r.LastRefreshAt,
			lastError:   r.LastRefreshError,
			failures:    r.Failures,
		})
	}
	return out, nil
}

// record returns e as stored.
func (c *Cache) record(e *entry) Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Record{
		Domain: e.domain.String(), ID: e.id, Policy: string(e.raw), Mode: e.policy.Mode, MaxAge: e.policy.MaxAge,
		Fetched: e.fetched, Expires: e.expires, LastUsed: e.lastUsed, LastRefreshAt: e.lastErrorAt,
		LastRefreshError: e.lastError, Failures: e.failures,
	}
}

// save writes e, replacing the domain's record. In cluster mode it writes only the local copy and marks e
// for the shared store: the caller pushes it there (push) once it has released writeMu, so that a shared
// store that does not answer never holds the cache's other writes.
func (c *Cache) save(ctx context.Context, e *entry) error {
	r := c.record(e)
	c.mu.Lock()
	e.usedDirty = false
	c.seq++
	e.seq = c.seq
	c.mu.Unlock()
	if c.local != nil {
		c.mu.Lock()
		e.sharedDirty = true
		c.mu.Unlock()
		if err := c.local.Save(ctx, r); err != nil {
			return fmt.Errorf("mtastscache: local copy: save %s: %w", e.domain, err)
		}
		return nil
	}
	if err := c.store.Save(ctx, r); err != nil {
		return fmt.Errorf("mtastscache: save %s: %w", e.domain, err)
	}
	return nil
}

// push writes e to the shared store (cluster mode), unless the shared store is known not to answer: then e
// stays marked and the next sync writes it. It is called without writeMu, and bounded by sharedTimeout.
func (c *Cache) push(ctx context.Context, e *entry) {
	if c.local == nil || c.sharedIsDown() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	if err := c.pushRecord(ctx, e); err != nil {
		c.sharedDown(err)
	}
}

// pushRecord writes e to the shared store and, unless e changed meanwhile, clears its mark.
func (c *Cache) pushRecord(ctx context.Context, e *entry) error {
	r := c.record(e)
	if err := c.store.Save(ctx, r); err != nil {
		return fmt.Errorf("mtastscache: shared store: save %s: %w", e.domain, err)
	}
	if c.record(e) == r {
		c.mu.Lock()
		e.sharedDirty = false
		c.mu.Unlock()
	}
	return nil
}

// saveUsage writes the last_used times that changed since they were last written.
func (c *Cache) saveUsage(ctx context.Context) error {
	type used struct {
		domain address.Domain
		at     time.Time
	}
	var dirty []used
	c.mu.Lock()
	for d, e := range c.entries {
		if e.usedDirty {
			dirty = append(dirty, used{d, e.lastUsed})
			e.usedDirty = false
		}
	}
	c.mu.Unlock()
	for i, u := range dirty {
		if c.local != nil {
			if err := c.local.Used(ctx, u.domain, u.at); err != nil {
				c.log.Error("mtastscache: local copy: save last_used", "domain", u.domain.String(), "err", err)
			}
		}
		if err := c.store.Used(ctx, u.domain, u.at); err != nil {
			// Mark the rest dirty again so a later call retries them.
			c.mu.Lock()
			for _, u := range dirty[i:] {
				if e := c.entries[u.domain]; e != nil {
					e.usedDirty = true
				}
			}
			c.mu.Unlock()
			return fmt.Errorf("mtastscache: save last_used: %w", err)
		}
	}
	return nil
}

func (c *Cache) remove(ctx context.Context, domain address.Domain) error {
	if c.local != nil {
		if err := c.local.Delete(ctx, domain); err != nil {
			return fmt.Errorf("mtastscache: local copy: delete %s: %w", domain, err)
		}
	}
	if c.local != nil {
		// Bounded: the caller holds writeMu. While the shared store does not answer, the record stays there.
		if c.sharedIsDown() {
			return fmt.Errorf("mtastscache: delete %s: %w", domain, errSharedDown)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, sharedTimeout)
		defer cancel()
		if err := c.store.Delete(ctx, domain); err != nil {
			c.sharedDown(err)
			return fmt.Errorf("mtastscache: shared store: delete %s: %w", domain, err)
		}
		return nil
	}
	if err := c.store.Delete(ctx, domain); err != nil {
		return fmt.Errorf("mtastscache: delete %s: %w", domain, err)
	}
	return nil
}

// SharedStore is a Store the nodes of a cluster share (PostgresStore). A Cache over one (Options.Local set)
// reads a policy another node fetched instead of fetching it again, and refreshes only while it holds the
// refresh lease.
type SharedStore interface {
	Store
	// Get returns domain's record; ok is false when there is none.
	Get(ctx context.Context, domain address.Domain) (r Record, ok bool, err error)
	// Lease takes or renews the lease name for holder until until, and reports whether holder has it: it
	// has it when nobody held it, when holder held it already, or when the other holder's lease ended
	// before now.
	Lease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
	// Flush removes domain's record and records that its policy was flushed at at: from then on, a record
	// of domain fetched before at is neither written (Save) nor returned (Load, Get). held reports
	// whether there was a record to remove.
	Flush(ctx context.Context, domain address.Domain, at time.Time) (held bool, err error)
	// Flushes returns the time of every domain's last flush.
	Flushes(ctx context.Context) (map[address.Domain]time.Time, error)
}
