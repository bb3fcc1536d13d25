package nodes

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

var sqliteMigrations = []string{`
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

// SQLiteStorage keeps the registry in a node's embedded SQLite database: a single node, which lists itself.
type SQLiteStorage struct {
	DB *store.DB
}

var _ Storage = SQLiteStorage{}

// Migrate implements Storage.
func (s SQLiteStorage) Migrate(ctx context.Context) error {
	return store.Migrate(ctx, s.DB, "nodes", sqliteMigrations)
}

// Beat implements Storage.
func (s SQLiteStorage) Beat(ctx context.Context, n Node) (Node, error) {
	var prev Node
	var started, beat int64
	err := s.DB.QueryRowContext(ctx, `SELECT instance, admin_url, started, heartbeat FROM nodes_registry WHERE name = ?`,
		n.Name).Scan(&prev.Instance, &prev.AdminURL, &started, &beat)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return Node{}, fmt.Errorf("%w: heartbeat of %s: %w", ErrStorage, n.Name, err)
	default:
		prev.Name, prev.Started, prev.Heartbeat = n.Name, fromMS(started), fromMS(beat)
	}
	_, err = s.DB.ExecContext(ctx, `INSERT INTO nodes_registry (name, admin_url, version, running, committed, queued,
		started, heartbeat, tls_verified, tls_encrypted, tls_plaintext, instance, clash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET admin_url = excluded.admin_url, version = excluded.version,
		running = excluded.running, committed = excluded.committed, queued = excluded.queued,
		started = excluded.started, heartbeat = excluded.heartbeat, tls_verified = excluded.tls_verified,
		tls_encrypted = excluded.tls_encrypted, tls_plaintext = excluded.tls_plaintext,
		instance = excluded.instance, clash = excluded.clash`,
		n.Name, n.AdminURL, n.Version, n.Running, n.Committed, n.Queued, ms(n.Started), ms(n.Heartbeat),
		n.TLS.Verified, n.TLS.Encrypted, n.TLS.Plaintext, n.Instance, n.Clash)
	if err != nil {
		return Node{}, fmt.Errorf("%w: heartbeat of %s: %w", ErrStorage, n.Name, err)
	}
	return prev, nil
}

// List implements Storage.
func (s SQLiteStorage) List(ctx context.Context) ([]Node, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT name, admin_url, version, running, committed, queued, started,
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
func (s SQLiteStorage) Forget(ctx context.Context, name string) error {
	res, err := s.DB.ExecContext(ctx, `DELETE FROM nodes_registry WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	return nil
}

// Secret implements Storage.
func (s SQLiteStorage) Secret(ctx context.Context, fresh string) (string, error) {
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO nodes_secret (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`, fresh); err != nil {
		return "", fmt.Errorf("%w: cluster secret: %w", ErrStorage, err)
	}
	var secret string
	err := s.DB.QueryRowContext(ctx, `SELECT secret FROM nodes_secret WHERE id = 1`).Scan(&secret)
	if err != nil {
		return "", fmt.Errorf("%w: cluster secret: %w", ErrStorage, err)
	}
	return secret, nil
}

// ms is t in Unix milliseconds, 0 for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}
