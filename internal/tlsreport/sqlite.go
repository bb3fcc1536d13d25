package tlsreport

import (
	"context"

	"github.com/mxgate/mxgate/internal/store"
)

// SQLiteStore keeps the reports in a node's embedded SQLite database (the single-node default).
type SQLiteStore struct {
	sqlStore
	db *store.DB
}

var _ Store = (*SQLiteStore)(nil)

// NewSQLiteStore returns the store in db.
func NewSQLiteStore(db *store.DB) *SQLiteStore {
	return &SQLiteStore{sqlStore: sqlStore{db: db.DB}, db: db}
}

// Migrate implements Store.
func (s *SQLiteStore) Migrate(ctx context.Context) error { return Migrate(ctx, s.db) }
