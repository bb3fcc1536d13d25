package settings

import (
	"context"
	"testing"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestMigrationsAsReleased: the migrations, written once for both databases, build the schema the released
// ones built on each, and a database made by the released ones takes them.
func TestMigrationsAsReleased(t *testing.T) {
	storetest.SameSchema(t, "settings", map[store.Dialect][]string{
		store.SQLite:   releasedSettingsSQLite,
		store.Postgres: releasedSettingsPostgres,
	}, func(ctx context.Context, db store.SQL) error { return sqlStorage{db}.migrate(ctx) })
}

// The migrations as released, to the letter: never edit these.
var (
	releasedSettingsSQLite = []string{`
CREATE TABLE settings_generations (
	gen INTEGER PRIMARY KEY,
	committed INTEGER NOT NULL,
	note TEXT NOT NULL,
	author TEXT NOT NULL,
	rollback_of INTEGER NOT NULL DEFAULT 0,
	doc TEXT NOT NULL
);
CREATE TABLE settings_staged (
	key TEXT PRIMARY KEY,
	value TEXT,
	unset INTEGER NOT NULL DEFAULT 0
);`}
	releasedSettingsPostgres = []string{`
CREATE TABLE settings_generations (
	gen BIGINT PRIMARY KEY,
	committed BIGINT NOT NULL,
	note TEXT NOT NULL,
	author TEXT NOT NULL,
	rollback_of BIGINT NOT NULL DEFAULT 0,
	doc TEXT NOT NULL
);
CREATE TABLE settings_staged (
	key TEXT PRIMARY KEY,
	value TEXT,
	unset BOOLEAN NOT NULL DEFAULT FALSE
);`}
)
