// Package store opens mxgate's state store and runs versioned schema migrations.
//
// The default store is an embedded SQLite database (modernc.org/sqlite, no cgo) in the data directory. Each
// component owns its tables and registers its migrations under its own name; Migrate applies the ones not yet
// applied, in order, each in its own transaction.
package store

import (
	"context"
	"database/sql"
	"errors"
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

// Migrate applies to db the migrations of component that are not applied yet. migrations[i] brings the
// component's schema from version i to version i+1. Migrations are never edited once released: add new ones.
func Migrate(ctx context.Context, db *DB, component string, migrations []string) error {
	var have int
	err := db.QueryRowContext(ctx, `SELECT version FROM schema_versions WHERE component = ?`, component).Scan(&have)
	if errors.Is(err, sql.ErrNoRows) {
		have = 0
	} else if err != nil {
		return fmt.Errorf("store: migrate %s: %w", component, err)
	}
	if have > len(migrations) {
		return fmt.Errorf("store: migrate %s: database is at version %d, this mxgate knows only %d", component, have, len(migrations))
	}
	for v := have; v < len(migrations); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: migrate %s to %d: %w", component, v+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migrate %s to %d: %w", component, v+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_versions(component, version) VALUES(?, ?)
			ON CONFLICT(component) DO UPDATE SET version = excluded.version`, component, v+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migrate %s to %d: %w", component, v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migrate %s to %d: %w", component, v+1, err)
		}
	}
	return nil
}
