package nodes

import (
	"context"
	"testing"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestMigrationsAsReleased: the migrations, written once for both databases, build the schema the released
// ones built on each, and a database made by the released ones takes them.
func TestMigrationsAsReleased(t *testing.T) {
	storetest.SameSchema(t, "nodes", map[store.Dialect][]string{
		store.SQLite:   releasedNodesSQLite,
		store.Postgres: releasedNodesPostgres,
	}, func(ctx context.Context, db store.SQL) error { return sqlStorage{db}.migrate(ctx) })
}

// The migrations as released, to the letter: never edit these.
var (
	releasedNodesSQLite = []string{`
CREATE TABLE nodes_registry (
	name TEXT PRIMARY KEY,
	admin_url TEXT NOT NULL,
	version TEXT NOT NULL,
	running INTEGER NOT NULL,
	committed INTEGER NOT NULL,
	queued INTEGER NOT NULL,
	started INTEGER NOT NULL,
	heartbeat INTEGER NOT NULL,
	tls_verified INTEGER NOT NULL,
	tls_encrypted INTEGER NOT NULL,
	tls_plaintext INTEGER NOT NULL
);
CREATE TABLE nodes_secret (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	secret TEXT NOT NULL
);`, `
ALTER TABLE nodes_registry ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes_registry ADD COLUMN clash TEXT NOT NULL DEFAULT '';`}
	releasedNodesPostgres = []string{`
CREATE TABLE nodes_registry (
	name TEXT PRIMARY KEY,
	admin_url TEXT NOT NULL,
	version TEXT NOT NULL,
	running BIGINT NOT NULL,
	committed BIGINT NOT NULL,
	queued BIGINT NOT NULL,
	started BIGINT NOT NULL,
	heartbeat BIGINT NOT NULL,
	tls_verified BIGINT NOT NULL,
	tls_encrypted BIGINT NOT NULL,
	tls_plaintext BIGINT NOT NULL
);
CREATE TABLE nodes_secret (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	secret TEXT NOT NULL
);`, `
ALTER TABLE nodes_registry ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes_registry ADD COLUMN clash TEXT NOT NULL DEFAULT '';`}
)
