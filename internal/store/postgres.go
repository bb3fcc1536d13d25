package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// PG is an open PostgreSQL state store shared by the nodes of a cluster.
type PG struct {
	*pgxpool.Pool
	// DSN is the connection string it was opened with.
	DSN string

	sqlOnce sync.Once
	sqlDB   *sql.DB
}

// SQL returns the database/sql handle on pg (pgx's database/sql driver), made at the first call. Its
// connections are the pool's: it keeps none idle of its own, so the pool's limit, its check of every
// connection it hands out and Close hold for both.
func (pg *PG) SQL() SQL {
	pg.sqlOnce.Do(func() { pg.sqlDB = stdlib.OpenDBFromPool(pg.Pool) })
	return SQL{db: pg.sqlDB, Dialect: Postgres}
}

// Close closes the database/sql handle, if made, and the pool.
func (pg *PG) Close() {
	pg.sqlOnce.Do(func() {})
	if pg.sqlDB != nil {
		pg.sqlDB.Close()
	}
	pg.Pool.Close()
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

// MigratePostgres applies to pg the PostgreSQL migrations of component that are not applied yet: pg.SQL().Migrate.
func MigratePostgres(ctx context.Context, pg *PG, component string, migrations []string) error {
	return pg.SQL().Migrate(ctx, component, migrations)
}
