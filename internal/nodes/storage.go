package nodes

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

// migrations are the versions of the registry's schema, in the SQL of both databases (store.Dialect.Schema);
// never edit a released one, append.
var migrations = []string{`
CREATE TABLE nodes_registry (
	name TEXT PRIMARY KEY,
	admin_url TEXT NOT NULL,
	version TEXT NOT NULL,
	running {int64} NOT NULL,
	committed {int64} NOT NULL,
	queued {int64} NOT NULL,
	started {int64} NOT NULL,
	heartbeat {int64} NOT NULL,
	tls_verified {int64} NOT NULL,
	tls_encrypted {int64} NOT NULL,
	tls_plaintext {int64} NOT NULL
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

// PostgresStorage keeps the registry in the PostgreSQL database a cluster shares: every node writes its own
// row and reads all of them.
type PostgresStorage struct {
	PG *store.PG
}

var (
	_ Storage = SQLiteStorage{}
	_ Storage = PostgresStorage{}
)

func (s SQLiteStorage) sql() sqlStorage   { return sqlStorage{s.DB.SQL()} }
func (s PostgresStorage) sql() sqlStorage { return sqlStorage{s.PG.SQL()} }

// Migrate implements Storage.
func (s SQLiteStorage) Migrate(ctx context.Context) error { return s.sql().migrate(ctx) }

// Beat implements Storage.
func (s SQLiteStorage) Beat(ctx context.Context, n Node) (Node, error) { return s.sql().beat(ctx, n) }

// List implements Storage.
func (s SQLiteStorage) List(ctx context.Context) ([]Node, error) { return s.sql().list(ctx) }

// Forget implements Storage.
func (s SQLiteStorage) Forget(ctx context.Context, name string) error {
	return s.sql().forget(ctx, name)
}

// Secret implements Storage.
func (s SQLiteStorage) Secret(ctx context.Context, fresh string) (string, error) {
	return s.sql().secret(ctx, fresh)
}

// Migrate implements Storage.
func (s PostgresStorage) Migrate(ctx context.Context) error { return s.sql().migrate(ctx) }

// Beat implements Storage.
func (s PostgresStorage) Beat(ctx context.Context, n Node) (Node, error) { return s.sql().beat(ctx, n) }

// List implements Storage.
func (s PostgresStorage) List(ctx context.Context) ([]Node, error) { return s.sql().list(ctx) }

// Forget implements Storage.
func (s PostgresStorage) Forget(ctx context.Context, name string) error {
	return s.sql().forget(ctx, name)
}

// Secret implements Storage.
func (s PostgresStorage) Secret(ctx context.Context, fresh string) (string, error) {
	return s.sql().secret(ctx, fresh)
}

// sqlStorage is the registry's SQL, the same on both databases.
type sqlStorage struct {
	db store.SQL
}

func (s sqlStorage) migrate(ctx context.Context) error {
	return s.db.Migrate(ctx, "nodes", migrations)
}

// beat reads the row n replaces and writes n in one transaction. On PostgreSQL a write of another process
// under the same name committed between the two statements is found at the next heartbeat.
func (s sqlStorage) beat(ctx context.Context, n Node) (Node, error) {
	var prev Node
	err := s.db.InTx(ctx, func(tx store.Tx) error {
		var started, beat int64
		err := tx.QueryRowContext(ctx, `SELECT instance, admin_url, started, heartbeat FROM nodes_registry
			WHERE name = ?`, n.Name).Scan(&prev.Instance, &prev.AdminURL, &started, &beat)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			prev.Name, prev.Started, prev.Heartbeat = n.Name, fromMS(started), fromMS(beat)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO nodes_registry (name, admin_url, version, running, committed,
			queued, started, heartbeat, tls_verified, tls_encrypted, tls_plaintext, instance, clash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET admin_url = excluded.admin_url, version = excluded.version,
			running = excluded.running, committed = excluded.committed, queued = excluded.queued,
			started = excluded.started, heartbeat = excluded.heartbeat, tls_verified = excluded.tls_verified,
			tls_encrypted = excluded.tls_encrypted, tls_plaintext = excluded.tls_plaintext,
			instance = excluded.instance, clash = excluded.clash`,
			n.Name, n.AdminURL, n.Version, n.Running, n.Committed, n.Queued, ms(n.Started), ms(n.Heartbeat),
			n.TLS.Verified, n.TLS.Encrypted, n.TLS.Plaintext, n.Instance, n.Clash)
		return err
	})
	if err != nil {
		return Node{}, fmt.Errorf("%w: heartbeat of %s: %w", ErrStorage, n.Name, err)
	}
	return prev, nil
}

func (s sqlStorage) list(ctx context.Context) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, admin_url, version, running, committed, queued, started,
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

func (s sqlStorage) forget(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM nodes_registry WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	return nil
}

// secret runs two statements: on PostgreSQL the insert of a node that lost the race waits for the winner's
// commit and does nothing; the select that follows, in a snapshot of its own, reads the winner's secret.
func (s sqlStorage) secret(ctx context.Context, fresh string) (string, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO nodes_secret (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`, fresh); err != nil {
		return "", fmt.Errorf("%w: cluster secret: %w", ErrStorage, err)
	}
	var secret string
	if err := s.db.QueryRowContext(ctx, `SELECT secret FROM nodes_secret WHERE id = 1`).Scan(&secret); err != nil {
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
