// Package store opens mxgate's state store and runs versioned schema migrations.
//
// The default store is an embedded SQLite database (modernc.org/sqlite, no cgo) in the data directory (DB); a
// cluster shares a PostgreSQL database (PG, a pgx pool). Each component owns its tables and registers its
// migrations under its own name; Migrate applies the ones not yet applied, in order, each in its own
// transaction.
//
// A component whose SQL is the same on both databases writes it once against SQL (DB.SQL, PG.SQL): a
// database/sql handle and its Dialect, which rewrites "?" placeholders to PostgreSQL's "$n" and, in
// migrations, the type words {int64}, {serial} and {blob} to each database's types (Dialect.Schema). Where
// the databases differ, the component branches on Dialect, or keeps PostgreSQL-only work (LISTEN/NOTIFY,
// CopyFrom) on the PG's pgx pool.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is an open state store.
type DB struct {
	*sql.DB
	Path string
}

// OpenSQLite opens (creating if needed) the SQLite database at path, in WAL mode with full durability:
// a committed transaction is on disk when Commit returns.
func OpenSQLite(path string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	// After a checkpoint the WAL file is cut back to 64 MiB, so a burst does not keep disk space that a
	// small data volume needs for the spool.
	q.Add("_pragma", "journal_size_limit(67108864)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+abs+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	// SQLite allows one writer; a single connection serialises writers without SQLITE_BUSY storms, and WAL
	// keeps it fast. Readers queue behind it, which is fine for a gateway's state.
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS schema_versions (
		component TEXT PRIMARY KEY, version INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	return &DB{DB: db, Path: abs}, nil
}

// Migrate applies to db the migrations of component that are not applied yet: db.SQL().Migrate.
func Migrate(ctx context.Context, db *DB, component string, migrations []string) error {
	return db.SQL().Migrate(ctx, component, migrations)
}
