package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Dialect is the SQL a state store speaks.
type Dialect int

const (
	// SQLite is the embedded database of a single node (DB).
	SQLite Dialect = iota
	// Postgres is the PostgreSQL database a cluster shares (PG).
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "PostgreSQL"
	}
	return "SQLite"
}

// SQL is a database/sql handle on either state store, so that a component writes its statements once, in
// the SQL both databases accept: placeholders are written "?" and rewritten to "$1", "$2", … for
// PostgreSQL. DB.SQL and PG.SQL return one. Features only one database has (PostgreSQL's LISTEN/NOTIFY,
// advisory locks beyond a statement, CopyFrom) stay with the component's own code: Dialect says which
// database it is, and a PG keeps its pgx pool.
type SQL struct {
	db      *sql.DB
	Dialect Dialect
}

// Querier is what SQL and Tx have in common: statements with "?" placeholders.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ Querier = SQL{}
	_ Querier = Tx{}
)

// SQL returns the database/sql handle on db.
func (db *DB) SQL() SQL { return SQL{db: db.DB, Dialect: SQLite} }

// Q returns query with the dialect's placeholders: each "?" outside a quoted string or identifier becomes
// "$n" for PostgreSQL; SQLite takes query as it is.
func (d Dialect) Q(query string) string {
	if d != Postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote rune // the quote character of the literal or identifier the scan is in, 0 outside
	for _, c := range query {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0 // a doubled quote closes and reopens: the same result
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ExecContext runs a statement that returns no rows.
func (s SQL) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.Dialect.Q(query), args...)
}

// QueryContext runs a query.
func (s SQL) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.Dialect.Q(query), args...)
}

// QueryRowContext runs a query that returns at most one row.
func (s SQL) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.Dialect.Q(query), args...)
}

// Begin starts a transaction. On SQLite it holds the write lock from its start (BEGIN IMMEDIATE); on
// PostgreSQL it is READ COMMITTED.
func (s SQL) Begin(ctx context.Context) (Tx, error) { return s.BeginTx(ctx, nil) }

// BeginTx starts a transaction with opts (nil: Begin's), such as a read-only snapshot on PostgreSQL
// (sql.LevelRepeatableRead).
func (s SQL) BeginTx(ctx context.Context, opts *sql.TxOptions) (Tx, error) {
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return Tx{}, err
	}
	return Tx{tx: tx, Dialect: s.Dialect}, nil
}

// InTx runs fn in a transaction and commits it when fn returns nil; otherwise it rolls back and returns
// fn's error as is.
func (s SQL) InTx(ctx context.Context, fn func(Tx) error) error {
	tx, err := s.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Tx is a transaction of a SQL.
type Tx struct {
	tx      *sql.Tx
	Dialect Dialect
}

// ExecContext runs a statement that returns no rows.
func (t Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.Dialect.Q(query), args...)
}

// QueryContext runs a query.
func (t Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.Dialect.Q(query), args...)
}

// QueryRowContext runs a query that returns at most one row.
func (t Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.Dialect.Q(query), args...)
}

// Commit commits the transaction.
func (t Tx) Commit() error { return t.tx.Commit() }

// Rollback aborts the transaction; after Commit it does nothing.
func (t Tx) Rollback() error { return t.tx.Rollback() }

// Schema returns the migration text ddl in the dialect: the type words {int64} (a 64-bit integer),
// {serial} (a 64-bit integer key the database numbers: "id {serial} PRIMARY KEY") and {blob} (bytes) become
// the dialect's, so that one text serves both databases. Text without them is returned as it is.
func (d Dialect) Schema(ddl string) string {
	if !strings.Contains(ddl, "{") {
		return ddl
	}
	if d == Postgres {
		return strings.NewReplacer("{int64}", "BIGINT", "{serial}", "BIGSERIAL", "{blob}", "BYTEA").Replace(ddl)
	}
	// SQLite's INTEGER is 64 bits, and "INTEGER PRIMARY KEY" is the rowid, numbered by the database.
	return strings.NewReplacer("{int64}", "INTEGER", "{serial}", "INTEGER", "{blob}", "BLOB").Replace(ddl)
}

// migrationLock is the transaction-level advisory lock key that serialises migrations between nodes
// starting at once ("mxgmigr" as a number).
const migrationLock = 0x6d78676d69677200

// Migrate applies the migrations of component that are not applied yet, each in its own transaction
// together with its row in schema_versions. migrations[i] brings the component's schema from version i to
// version i+1, in the dialect's SQL after Schema; released migrations are never edited: add new ones. On
// PostgreSQL an advisory lock makes nodes starting together apply each migration once. A database at a
// newer version than migrations knows is refused.
func (s SQL) Migrate(ctx context.Context, component string, migrations []string) error {
	for {
		done, err := s.migrateOne(ctx, component, migrations)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next migration of component, if any, and reports whether there was none.
func (s SQL) migrateOne(ctx context.Context, component string, migrations []string) (bool, error) {
	tx, err := s.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("store: migrate %s: %w", component, err)
	}
	defer tx.Rollback()
	if s.Dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrationLock)); err != nil {
			return false, fmt.Errorf("store: migrate %s: %w", component, err)
		}
		// Init creates it too; a pool made by NewPostgres for a database that was down at start may not have.
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_versions (
			component TEXT PRIMARY KEY, version INTEGER NOT NULL)`); err != nil {
			return false, fmt.Errorf("store: migrate %s: %w", component, err)
		}
	}
	var have int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_versions WHERE component = ?`, component).Scan(&have)
	if errors.Is(err, sql.ErrNoRows) {
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
	if _, err := tx.tx.ExecContext(ctx, s.Dialect.Schema(migrations[have])); err != nil {
		return false, fmt.Errorf("store: migrate %s to %d: %w", component, have+1, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_versions(component, version) VALUES(?, ?)
		ON CONFLICT(component) DO UPDATE SET version = excluded.version`, component, have+1); err != nil {
		return false, fmt.Errorf("store: migrate %s to %d: %w", component, have+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: migrate %s to %d: %w", component, have+1, err)
	}
	return false, nil
}
