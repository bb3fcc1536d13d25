package console

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

// countersRetention is how long the shared counters are kept: the dashboard shows 24 hours.
const countersRetention = 48 * time.Hour

// PostgresCounters keeps every node's dashboard counters in the PostgreSQL database a cluster shares (table
// console_counters, one row per node per clock hour).
type PostgresCounters struct {
	PG *store.PG
}

var _ CounterStore = PostgresCounters{}

// Migrate creates or updates the console's tables.
func (s PostgresCounters) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.PG, "console", postgresMigrations)
}

// Publish implements CounterStore: one upsert per hour, in one transaction, and the rows of every node
// older than countersRetention dropped (by the database's clock, or now when that is earlier).
func (s PostgresCounters) Publish(ctx context.Context, node string, now time.Time, hours []HourCounters) error {
	tx, err := s.PG.Begin(ctx)
	if err != nil {
		return fmt.Errorf("console: counters: %w", err)
	}
	defer tx.Rollback(ctx)
	for _, h := range hours {
		js, err := json.Marshal(h)
		if err != nil {
			return fmt.Errorf("console: counters: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO console_counters (node, hour, counts, updated) VALUES ($1, $2, $3, $4)
			ON CONFLICT (node, hour) DO UPDATE SET counts = excluded.counts, updated = excluded.updated`,
			node, h.Hour.Unix()/3600, string(js), now.UTC()); err != nil {
			return fmt.Errorf("console: counters: %w", err)
		}
	}
	// Retention by the earlier of this node's clock and the database's: a node whose clock runs ahead must
	// not drop the other nodes' recent hours.
	if _, err := tx.Exec(ctx, `DELETE FROM console_counters WHERE hour < (least($1::bigint, extract(epoch FROM now())::bigint) - $2::bigint) / 3600`,
		now.Unix(), int64(countersRetention/time.Second)); err != nil {
		return fmt.Errorf("console: counters: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("console: counters: %w", err)
	}
	return nil
}

// Read implements CounterStore; nodes come in name order.
func (s PostgresCounters) Read(ctx context.Context, since time.Time) ([]NodeCounters, error) {
	rows, err := s.PG.Query(ctx, `SELECT node, counts, updated FROM console_counters WHERE hour >= $1 ORDER BY node, hour`,
		since.Unix()/3600)
	if err != nil {
		return nil, fmt.Errorf("console: counters: %w", err)
	}
	defer rows.Close()
	var out []NodeCounters
	for rows.Next() {
		var node, js string
		var updated time.Time
		if err := rows.Scan(&node, &js, &updated); err != nil {
			return nil, fmt.Errorf("console: counters: %w", err)
		}
		var h HourCounters
		if err := json.Unmarshal([]byte(js), &h); err != nil {
			return nil, fmt.Errorf("console: counters of %s: %w", node, err)
		}
		if len(out) == 0 || out[len(out)-1].Node != node {
			out = append(out, NodeCounters{Node: node})
		}
		n := &out[len(out)-1]
		n.Hours = append(n.Hours, h)
		if updated.After(n.Updated) {
			n.Updated = updated
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("console: counters: %w", err)
	}
	slices.SortFunc(out, func(a, b NodeCounters) int {
		if a.Node < b.Node {
			return -1
		}
		if a.Node > b.Node {
			return 1
		}
		return 0
	})
	return out, nil
}
