package mtastscache

import (
	"context"
	"testing"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestMigrationsAsReleased: the migrations, written once for both databases, build the schema the released
// ones built on each, and a database made by the released ones takes them.
func TestMigrationsAsReleased(t *testing.T) {
	storetest.SameSchema(t, "mtastscache", map[store.Dialect][]string{
		store.SQLite:   releasedMtastscacheSQLite,
		store.Postgres: releasedMtastscachePostgres,
	}, func(ctx context.Context, db store.SQL) error { return sqlStore{db}.migrate(ctx) })
}

// The migrations as released, to the letter: never edit these.
var (
	releasedMtastscacheSQLite = []string{
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
		`CREATE TABLE mtasts_flushes (
		domain  TEXT PRIMARY KEY,
		flushed INTEGER NOT NULL
	)`,
	}
	releasedMtastscachePostgres = []string{
		`CREATE TABLE mtasts_policies (
		domain               TEXT PRIMARY KEY,
		id                   TEXT NOT NULL,
		policy               TEXT NOT NULL,
		mode                 TEXT NOT NULL,
		max_age              BIGINT NOT NULL,
		fetched              BIGINT NOT NULL,
		expires              BIGINT NOT NULL,
		last_used            BIGINT NOT NULL DEFAULT 0,
		last_refresh_at      BIGINT NOT NULL DEFAULT 0,
		last_refresh_error   TEXT NOT NULL DEFAULT '',
		consecutive_failures INTEGER NOT NULL DEFAULT 0
	)`,
		// Leases: which node refreshes the cluster's policies (Lease), until when (Unix nanoseconds).
		`CREATE TABLE mtasts_leases (
		name   TEXT PRIMARY KEY,
		holder TEXT NOT NULL,
		until  BIGINT NOT NULL
	)`,
		`CREATE TABLE mtasts_flushes (
		domain  TEXT PRIMARY KEY,
		flushed BIGINT NOT NULL
	)`,
	}
)
