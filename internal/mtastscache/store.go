package mtastscache

import (
	"context"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// migrations are the versions of this package's schema; never edit a released one, append.
//
// Times are Unix nanoseconds, 0 for "never". policy is the policy body as fetched; the parsed form is rebuilt
// from it at load, so a stricter parser drops what it no longer accepts. mode and max_age (seconds) are
// copies for people reading the database.
var migrations = []string{
	`CREATE TABLE mtasts_policies (
		domain               TEXT PRIMARY KEY,
		id                   TEXT NOT NULL,
		policy               TEXT NOT NULL,
		mode                 TEXT NOT NULL,
		max_age              INTEGER NOT NULL,
		fetched              INTEGER NOT NULL,
		expires              INTEGER NOT NULL,
		last_used            INTEGER NOT NULL DEFAULT 0,
		last_refresh_at      INTEGER NOT NULL DEFAULT 0,
		last_refresh_error   TEXT NOT NULL DEFAULT '',
		consecutive_failures INTEGER NOT NULL DEFAULT 0
	)`,
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

// load reads every stored policy. A row whose domain or policy no longer parses is skipped with a warning;
// the next successful fetch for that domain overwrites it.
func (c *Cache) load(ctx context.Context) ([]*entry, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT domain, id, policy, fetched, expires, last_used,
		last_refresh_at, last_refresh_error, consecutive_failures FROM mtasts_policies`)
	if err != nil {
		return nil, fmt.Errorf("mtastscache: load: %w", err)
	}
	defer rows.Close()
	var out []*entry
	for rows.Next() {
		var (
			name, id, body                          string
			fetched, expires, lastUsed, lastErrorAt int64
			lastError                               string
			failures                                int
		)
		if err := rows.Scan(&name, &id, &body, &fetched, &expires, &lastUsed, &lastErrorAt, &lastError, &failures); err != nil {
			return nil, fmt.Errorf("mtastscache: load: %w", err)
		}
		domain, err := address.ParseDomain(name)
		if err != nil {
			c.log.Warn("mtastscache: dropping stored policy with invalid domain", "domain", name, "err", err)
			continue
		}
		pol, err := mtasts.ParsePolicy([]byte(body))
		if err != nil {
			c.log.Warn("mtastscache: dropping stored policy that no longer parses", "domain", name, "err", err)
			continue
		}
		out = append(out, &entry{
			domain:      domain,
			id:          id,
			policy:      pol,
			raw:         []byte(body),
			fetched:     fromDB(fetched),
			expires:     fromDB(expires),
			lastUsed:    fromDB(lastUsed),
			lastErrorAt: fromDB(lastErrorAt),
			lastError:   lastError,
			failures:    failures,
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mtastscache: load: %w", err)
	}
	return out, nil
}

// save writes e, replacing the domain's row.
func (c *Cache) save(ctx context.Context, e *entry) error {
	c.mu.Lock()
	lastUsed, lastErrorAt, lastError, failures := e.lastUsed, e.lastErrorAt, e.lastError, e.failures
	e.usedDirty = false
	c.mu.Unlock()
	_, err := c.db.ExecContext(ctx, `INSERT INTO mtasts_policies(domain, id, policy, mode, max_age, fetched,
		expires, last_used, last_refresh_at, last_refresh_error, consecutive_failures)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(domain) DO UPDATE SET id = excluded.id, policy = excluded.policy, mode = excluded.mode,
			max_age = excluded.max_age, fetched = excluded.fetched, expires = excluded.expires,
			last_used = excluded.last_used, last_refresh_at = excluded.last_refresh_at,
			last_refresh_error = excluded.last_refresh_error,
			consecutive_failures = excluded.consecutive_failures`,
		e.domain.String(), e.id, string(e.raw), string(e.policy.Mode), int64(e.policy.MaxAge/time.Second),
		toDB(e.fetched), toDB(e.expires), toDB(lastUsed), toDB(lastErrorAt), lastError, failures)
	if err != nil {
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
		if _, err := c.db.ExecContext(ctx, `UPDATE mtasts_policies SET last_used = ? WHERE domain = ? AND last_used < ?`,
			toDB(u.at), u.domain.String(), toDB(u.at)); err != nil {
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
	if _, err := c.db.ExecContext(ctx, `DELETE FROM mtasts_policies WHERE domain = ?`, domain.String()); err != nil {
		return fmt.Errorf("mtastscache: delete %s: %w", domain, err)
	}
	return nil
}
