// Package dkimkey keeps the key that signs TLS reports sent by mail (RFC 8460 Section 3: they MUST carry a
// valid DKIM signature) when mxgate makes it itself at first start: in a file of the node's data directory
// (FileStore), or in cluster mode in the database the cluster shares (PostgresStore), so that every node signs
// with the same key and DNS publishes one record. It does not sign (tlsreport does) nor parse keys.
package dkimkey

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/mxgate/mxgate/internal/atomicfile"
	"github.com/mxgate/mxgate/internal/store"
)

// Store keeps one key, as PEM. Both implementations pass the same contract tests (dkimkey_test.go).
type Store interface {
	// Migrate brings the store's schema up to date.
	Migrate(ctx context.Context) error
	// Load returns the stored key; the error wraps fs.ErrNotExist when there is none.
	Load(ctx context.Context) ([]byte, error)
	// LoadOrStore returns the stored key, storing key first when there is none: when two nodes (or
	// processes) store at once, both get the key of the first, and the other key is dropped.
	LoadOrStore(ctx context.Context, key []byte) ([]byte, error)
}

// New makes a new key as PEM: RSA 2048 rather than Ed25519, because RFC 8463 keys are still not verified by
// many large receivers, and an unverifiable signature is as good as none.
func New() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// FileStore keeps the key in a file readable by its owner only (a single node's data directory, and a
// cluster node's local copy).
type FileStore struct {
	Path string
}

var _ Store = FileStore{}

// Migrate implements Store.
func (FileStore) Migrate(context.Context) error { return nil }

// Load implements Store.
func (s FileStore) Load(context.Context) ([]byte, error) {
	b, err := os.ReadFile(s.Path)
	if err != nil {
		return nil, fmt.Errorf("dkimkey: %w", err)
	}
	return b, nil
}

// LoadOrStore implements Store. Create, not Replace: a key another process made meanwhile is kept.
func (s FileStore) LoadOrStore(ctx context.Context, key []byte) ([]byte, error) {
	if err := atomicfile.Create(s.Path, key, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return s.Load(ctx)
		}
		return nil, fmt.Errorf("dkimkey: %w", err)
	}
	return key, nil
}

// Replace writes key over the file (a cluster node's local copy taking the cluster's key).
func (s FileStore) Replace(key []byte) error {
	if err := atomicfile.Replace(s.Path, key, 0o600); err != nil {
		return fmt.Errorf("dkimkey: %w", err)
	}
	return nil
}

// postgresMigrations are the versions of this package's PostgreSQL schema; never edit a released one, append.
var postgresMigrations = []string{
	`CREATE TABLE tlsrpt_dkim_key (
		name TEXT PRIMARY KEY,
		pem  TEXT NOT NULL
	)`,
}

// keyName is the row of the generated key (a table, so that more keys can follow without a migration).
const keyName = "generated"

// PostgresStore keeps the key in the database a cluster shares.
type PostgresStore struct {
	PG *store.PG
}

var _ Store = PostgresStore{}

// Migrate implements Store.
func (s PostgresStore) Migrate(ctx context.Context) error {
	return store.MigratePostgres(ctx, s.PG, "dkimkey", postgresMigrations)
}

// Load implements Store.
func (s PostgresStore) Load(ctx context.Context) ([]byte, error) {
	var key string
	err := s.PG.QueryRow(ctx, `SELECT pem FROM tlsrpt_dkim_key WHERE name = $1`, keyName).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("dkimkey: no key in the shared database: %w", fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("dkimkey: %w", err)
	}
	return []byte(key), nil
}

// LoadOrStore implements Store.
func (s PostgresStore) LoadOrStore(ctx context.Context, key []byte) ([]byte, error) {
	if _, err := s.PG.Exec(ctx, `INSERT INTO tlsrpt_dkim_key(name, pem) VALUES($1, $2) ON CONFLICT(name) DO NOTHING`,
		keyName, string(key)); err != nil {
		return nil, fmt.Errorf("dkimkey: %w", err)
	}
	return s.Load(ctx)
}
