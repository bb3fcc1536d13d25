package nodes

import (
	"context"
	"fmt"

	"github.com/mxgate/mxgate/internal/store"
)

var postgresMigrations = []string{`
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

// PostgresStorage keeps the registry in the PostgreSQL database a cluster shares: every node writes its own
// row and reads all of them.
type PostgresStorage struct {
	PG *store.PG
}

var _ Storage = PostgresStorage{}

// Migrate implements Storage.
func (s PostgresStorage) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.PG, "nodes", postgresMigrations)
}

// Beat implements Storage. The row replaced is read in the same statement, in its snapshot: a write of
// another process under the same name committed meanwhile is found at the next heartbeat.
func (s PostgresStorage) Beat(ctx context.Context, n Node) (Node, error) {
	var inst, url *string
	var started, beat *int64
	err := s.PG.QueryRow(ctx, `WITH prev AS (SELECT instance, admin_url, started, heartbeat FROM nodes_registry
		WHERE name = $1)
		INSERT INTO nodes_registry (name, admin_url, version, running, committed, queued, started, heartbeat,
		tls_verified, tls_encrypted, tls_plaintext, instance, clash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (name) DO UPDATE SET admin_url = excluded.admin_url, version = excluded.version,
		running = excluded.running, committed = excluded.committed, queued = excluded.queued,
		started = excluded.started, heartbeat = excluded.heartbeat, tls_verified = excluded.tls_verified,
		tls_encrypted = excluded.tls_encrypted, tls_plaintext = excluded.tls_plaintext,
		instance = excluded.instance, clash = excluded.clash
		RETURNING (SELECT instance FROM prev), (SELECT admin_url FROM prev), (SELECT started FROM prev),
		(SELECT heartbeat FROM prev)`,
		n.Name, n.AdminURL, n.Version, n.Running, n.Committed, n.Queued, ms(n.Started), ms(n.Heartbeat),
		n.TLS.Verified, n.TLS.Encrypted, n.TLS.Plaintext, n.Instance, n.Clash).Scan(&inst, &url, &started, &beat)
	if err != nil {
		return Node{}, fmt.Errorf("%w: heartbeat of %s: %w", ErrStorage, n.Name, err)
	}
	if inst == nil {
		return Node{}, nil
	}
	return Node{Name: n.Name, Instance: *inst, AdminURL: *url, Started: fromMS(*started), Heartbeat: fromMS(*beat)}, nil
}

// List implements Storage.
func (s PostgresStorage) List(ctx context.Context) ([]Node, error) {
	rows, err := s.PG.Query(ctx, `SELECT name, admin_url, version, running, committed, queued, started,
		heartbeat, tls_verified, tls_encrypted, tls_plaintext, instance, clash FROM nodes_registry ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var n Node
		var started, beat int64
		if err := rows.Scan(&n.Name, &n.AdminURL, &n.Version, &n.Running, &n.Committed, &n.Queued, &started, &beat,
			&n.TLS.Verified, &n.TLS.Encrypted, &n.TLS.Plaintext, &n.Instance, &n.Clash); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStorage, err)
		}
		n.Started, n.Heartbeat = fromMS(started), fromMS(beat)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return out, nil
}

// Forget implements Storage.
func (s PostgresStorage) Forget(ctx context.Context, name string) error {
	tag, err := s.PG.Exec(ctx, `DELETE FROM nodes_registry WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	return nil
}

// Secret implements Storage.
func (s PostgresStorage) Secret(ctx context.Context, fresh string) (string, error) {
	// Two statements: the insert of a node that lost the race waits for the winner's commit and does
	// nothing; the select that follows, in a snapshot of its own, reads the winner's secret.
	if _, err := s.PG.Exec(ctx, `INSERT INTO nodes_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, fresh); err != nil {
		return "", fmt.Errorf("%w: cluster secret: %w", ErrStorage, err)
	}
	var secret string
	if err := s.PG.QueryRow(ctx, `SELECT secret FROM nodes_secret WHERE id = 1`).Scan(&secret); err != nil {
		return "", fmt.Errorf("%w: cluster secret: %w", ErrStorage, err)
	}
	return secret, nil
}
