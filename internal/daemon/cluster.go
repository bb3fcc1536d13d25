package daemon

import (
	"context"

	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/store"
)

// settingsStorage returns where the committed settings are kept: the node's SQLite database, or, when [data]
// database names a PostgreSQL server, the database the cluster shares (then d.pg is that database, for Run to
// follow commits made on other nodes).
func (d *Daemon) settingsStorage(ctx context.Context) (settings.Storage, error) {
	if d.cfg.Data.Database == "" {
		return settings.SQLiteStorage{DB: d.DB}, nil
	}
	pg, err := store.OpenPostgres(ctx, d.cfg.Data.Database)
	if err != nil {
		return nil, err
	}
	d.pg = pg
	d.onRelease(func(context.Context) error { pg.Close(); return nil })
	return settings.PostgresStorage{PG: pg}, nil
}

// followSettings keeps the node on the newest generation of the shared settings until ctx ends (cluster mode).
func (d *Daemon) followSettings(ctx context.Context) {
	settings.Follow(ctx, settings.FollowOptions{
		Store:  d.settingsStore,
		Listen: settings.PostgresStorage{PG: d.pg}.Listen,
		Logger: d.log.With("component", "settings"),
	})
}
