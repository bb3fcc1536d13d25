package daemon

import (
	"context"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/store"
)

// openSettings opens the committed settings: in the node's SQLite database, or, when [data] database names a
// PostgreSQL server, in the database the cluster shares (then pg is that database, for Run to follow
// commits made on other nodes).
func openSettings(ctx context.Context, cfg *config.Config, db *store.DB, seed map[string]string, now func() time.Time) (*settings.Store, *store.PG, error) {
	if cfg.Data.Database == "" {
		s, err := settings.Open(ctx, db, seed, now)
		return s, nil, err
	}
	pg, err := store.OpenPostgres(ctx, cfg.Data.Database)
	if err != nil {
		return nil, nil, err
	}
	s, err := settings.OpenStorage(ctx, settings.PostgresStorage{PG: pg}, seed, now)
	if err != nil {
		pg.Close()
		return nil, nil, err
	}
	return s, pg, nil
}

// followSettings keeps the node on the newest generation of the shared settings until ctx ends (cluster mode).
func (d *Daemon) followSettings(ctx context.Context) {
	settings.Follow(ctx, settings.FollowOptions{
		Store:  d.settingsStore,
		Listen: settings.PostgresStorage{PG: d.pg}.Listen,
		Logger: d.log.With("component", "settings"),
	})
}

// closeShared closes the shared database, if any.
func (d *Daemon) closeShared() {
	if d.pg != nil {
		d.pg.Close()
	}
}
