package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PG is an open PostgreSQL state store shared by the nodes of a cluster.
type PG struct {
	*pgxpool.Pool
	// DSN is the connection string it was opened with.
	DSN string
}

// IsPostgresDSN reports whether dsn names a PostgreSQL server (the [data] database key): a postgres:// or
// postgresql:// URL.
func IsPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Redact returns dsn with its password hidden, for logs and error messages.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// OpenPostgres connects to the PostgreSQL database dsn (postgres://user:password@host:port/db?sslmode=...),
// checks that it answers and creates the migration bookkeeping table.
func OpenPostgres(ctx context.Context, dsn string) (*PG, error) {
	pg, err := NewPostgres(dsn)
	if err != nil {
		return nil, err
	}
	if err := pg.Init(ctx); err != nil {
		pg.Close()
		return nil, err
	}
	return pg, nil
}

// NewPostgres returns the connection pool of the PostgreSQL database dsn without connecting: the pool
// connects on first use, so that a node can start while the database is unreachable and use it once it
// returns. Only a malformed dsn is an error. Init checks that the database answers.
func NewPostgres(dsn string) (*PG, error) {
	if !IsPostgresDSN(dsn) {
		return nil, fmt.Errorf("store: database %q: want a postgres:// URL", Redact(dsn))
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: database %s: %w", Redact(dsn), err)
	}
	// Check every connection as it leaves the pool, not only those idle for a second (pgxpool's default): after
	// a server restart or failover the pool holds connections the server has closed, and the first statement
	// on each would fail. A round trip per statement is cheap for this state, which is never per message.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("store: database %s: %w", Redact(dsn), err)
	}
	return &PG{Pool: pool, DSN: dsn}, nil
}

// Init checks that the database answers and creates the migration bookkeeping table.
func (pg *PG) Init(ctx context.Context) error {
	if err := pg.Ping(ctx); err != nil {
		return fmt.Errorf("store: database %s: %w", Redact(pg.DSN), err)
	}
	if _, err := pg.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_versions (
		component TEXT PRIMARY KEY, version INTEGER NOT NULL)`); err != nil {
		// Two nodes starting together may race on the CREATE; the loser sees a unique violation on the
		// catalog, and the table then exists.
		if _, err2 := pg.Exec(ctx, `SELECT 1 FROM schema_versions LIMIT 1`); err2 != nil {
			return fmt.Errorf("store: database %s: %w", Redact(pg.DSN), err)
		}
	}
	return nil
}

// migrationLock is the transaction-level advisory lock key that serialises migrations between nodes
// starting at once ("mxgmigr" as a number).
const migrationLock = 0x6d78676d69677200

// MigratePostgres applies to pg the PostgreSQL migrations of component that are not applied yet, each in its
// own transaction, under an advisory lock so that nodes starting together apply each migration once.
// migrations[i] brings the component's schema from version i to version i+1; released migrations are never
// edited: add new ones.
func MigratePostgres(ctx context.Context, pg *PG, component string, migrations []string) error {
	for {
		done, err := migratePostgresOne(ctx, pg, component, migrations)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migratePostgresOne applies the next migration of component, if any, and reports whether there was none.
func migratePostgresOne(ctx context.Context, pg *PG, component string, migrations []string) (bool, error) {
	tx, err := pg.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("store: migrate %s: %w", component, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return false, fmt.Errorf("store: migrate %s: %w", component, err)
	}
	// Init creates it too; a pool made by NewPostgres for a database that was down at start may not have.
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_versions (
		component TEXT PRIMARY KEY, version INTEGER NOT NULL)`); err != nil {
		return false, fmt.Errorf("store: migrate %s: %w", component, err)
	}
	var have int
	err = tx.QueryRow(ctx, `SELECT version FROM schema_versions WHERE component = $1`, component).Scan(&have)
	if errors.Is(err, pgx.ErrNoRows) {
		have = 0
	} else if err != nil {
		return false, fmt.Errorf("store: migrate %s: %w", component, err)
	}
	if have > len(migrations) {
		return false, fmt.Errorf("store: migrate %s: database is at version %d, this mxgate knows only %d", component, have, len(migrations))
	}
	if have == len(migrations) {
		return true, nil
	}
	if _, err := tx.Exec(ctx, migrations[have]); err != nil {
		return false, fmt.Errorf("store: migrate %s to %d: %w", component, have+1, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_versions(component, version) VALUES($1, $2)
		ON CONFLICT(component) DO UPDATE SET version = excluded.version`, component, have+1); err != nil {
		return false, fmt.Errorf("store: migrate %s to %d: %w", component, have+1, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("store: migrate %s to %d: %w", component, have+1, err)
	}
	return false, nil
}
