package tlsreport

import (
	"context"

	"github.com/mxgate/mxgate/internal/store"
)

// PostgresStore keeps the reports in the PostgreSQL database a cluster shares: every node adds its sessions
// to the same aggregates, and one report per Policy Domain and day is built from them.
type PostgresStore struct {
	sqlStore
	pg *store.PG
}

var _ Store = (*PostgresStore)(nil)

// NewPostgresStore returns the store in pg.
func NewPostgresStore(pg *store.PG) *PostgresStore {
	return &PostgresStore{sqlStore: sqlStore{db: pg.SQL()}, pg: pg}
}

// Migrate implements Store.
func (s *PostgresStore) Migrate(ctx context.Context) error { return migrate(ctx, s.db) }
