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
	recs, err := c.store.Load(ctx)
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

// save writes e, replacing the domain's record.
func (c *Cache) save(ctx context.Context, e *entry) error {
	c.mu.Lock()
	r := Record{
		Domain: e.domain.String(), ID: e.id, Policy: string(e.raw), Mode: e.policy.Mode, MaxAge: e.policy.MaxAge,
		Fetched: e.fetched, Expires: e.expires, LastUsed: e.lastUsed, LastRefreshAt: e.lastErrorAt,
		LastRefreshError: e.lastError, Failures: e.failures,
	}
	e.usedDirty = false
	c.mu.Unlock()
	if err := c.store.Save(ctx, r); err != nil {
		return fmt.Errorf("mtastscache: save %s: %w", e.domain, err)
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
	if err := c.store.Delete(ctx, domain); err != nil {
		return fmt.Errorf("mtastscache: delete %s: %w", domain, err)
	}
	return nil
}
