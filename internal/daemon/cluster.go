package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/store"
)

// componentDatabase is the PostgreSQL database a cluster shares ([data] database); it is failed while the
// node cannot reach it, and absent on a single node.
const componentDatabase = "database"

// componentSettings is the node's local copy of the settings generation in force (cluster mode only): it is
// failed while the copy cannot be written, since a node restarting while the database is unreachable would
// then run an older generation.
const componentSettings = "settings"

// settingsReplicaFile is a node's local copy of the settings generation in force, in its data directory
// (cluster mode only).
const settingsReplicaFile = "settings-replica.json"

// dbConnectTimeout bounds the first contact with the shared database at start: beyond it the node starts
// from its local copies.
const dbConnectTimeout = 10 * time.Second

// openShared connects to the database the cluster shares when [data] database names one; d.pg is then its
// pool, which reconnects by itself. A database that does not answer is no reason not to start: the node then
// runs from its local copies (the settings generation, the policy cache) and the component "database" says
// so until the database answers again.
func (d *Daemon) openShared(ctx context.Context, _ Options) error {
	if d.cfg.Data.Database == "" {
		return nil
	}
	pg, err := store.NewPostgres(d.cfg.Data.Database)
	if err != nil {
		return err
	}
	d.pg = pg
	d.onRelease(func(context.Context) error { pg.Close(); return nil })
	ictx, cancel := context.WithTimeout(ctx, dbConnectTimeout)
	defer cancel()
	if err := pg.Init(ictx); err != nil {
		d.pgDown = err
		d.databaseState(err)
		return nil
	}
	d.databaseState(nil)
	return nil
}

// databaseState records whether the shared database answers (err nil) in the component "database" and, once
// per outage, in the log.
func (d *Daemon) databaseState(err error) {
	if err == nil {
		d.warnings.set(d.log, componentDatabase, false, "shared database reachable again", "database", store.Redact(d.cfg.Data.Database))
		d.comps.set(componentDatabase, admin.ComponentRunning, "")
		return
	}
	gen := 0
	if d.settingsStore != nil {
		gen = d.settingsStore.Current().Generation
	}
	reason := fmt.Sprintf("shared database unreachable (%v): mail is accepted and delivered with settings generation %d and the MTA-STS policies of this node's local copy; commits and staged changes fail until it answers", err, gen)
	d.warnings.set(d.log, componentDatabase, true, "shared database unreachable: running from this node's local copies", "database", store.Redact(d.cfg.Data.Database), "err", err)
	d.comps.set(componentDatabase, admin.ComponentFailed, reason)
}

// openClusterSettings opens the settings kept in the shared database, with the node's local copy of the
// generation in force: the copy is what the node runs when it starts while the database is unreachable.
func (d *Daemon) openClusterSettings(ctx context.Context) (*settings.Store, error) {
	st := settings.PostgresStorage{PG: d.pg}
	rep := settings.Replica{Path: filepath.Join(d.cfg.Data.Dir, settingsReplicaFile)}
	s, err := d.openClusterSettingsStore(ctx, st, rep)
	if err != nil {
		return nil, err
	}
	d.comps.set(componentSettings, admin.ComponentRunning, "")
	s.Watch(func(snap settings.Snapshot) { d.replicaState(rep, snap, s.ReplicaError()) })
	return s, nil
}

// replicaState records whether the local copy of generation snap could be written (err nil) in the component
// "settings" and, once per failure, in the log.
func (d *Daemon) replicaState(rep settings.Replica, snap settings.Snapshot, err error) {
	if err == nil {
		d.warnings.set(d.log, componentSettings, false, "")
		d.comps.set(componentSettings, admin.ComponentRunning, "")
		return
	}
	d.warnings.set(d.log, componentSettings, true, "settings: cannot write this node's local copy of the generation in force: a restart while the shared database is unreachable would run an older generation",
		"generation", snap.Generation, "path", rep.Path, "err", err)
	d.comps.set(componentSettings, admin.ComponentFailed, fmt.Sprintf("cannot write the local copy of settings generation %d (%v): a restart while the shared database is unreachable would run an older generation", snap.Generation, err))
}

// openClusterSettingsStore is openClusterSettings' opening of the store.
func (d *Daemon) openClusterSettingsStore(ctx context.Context, st settings.PostgresStorage, rep settings.Replica) (*settings.Store, error) {
	seed := seedFromConfig(d.cfg)
	if d.pgDown != nil {
		s, err := settings.OpenReplica(st, d.now, rep)
		if err != nil {
			return nil, fmt.Errorf("%w; and %w", d.pgDown, err)
		}
		d.log.Warn("settings: shared database unreachable at start: running the last generation this node knew", "generation", s.Current().Generation, "err", d.pgDown)
		d.settingsStore = s
		d.databaseState(d.pgDown) // the reason names the generation now known
		return s, nil
	}
	octx, cancel := context.WithTimeout(ctx, dbConnectTimeout)
	defer cancel()
	s, offline, err := settings.OpenShared(octx, st, seed, d.now, rep)
	if err != nil {
		return nil, err
	}
	if offline != nil {
		d.pgDown = offline
		d.settingsStore = s
		d.databaseState(offline)
		d.log.Warn("settings: shared database unreachable at start: running the last generation this node knew", "generation", s.Current().Generation, "err", offline)
	}
	return s, nil
}

// followSettings keeps the node on the newest generation of the shared settings until ctx ends (cluster mode).
func (d *Daemon) followSettings(ctx context.Context) {
	settings.Follow(ctx, settings.FollowOptions{
		Store:   d.settingsStore,
		Listen:  settings.PostgresStorage{PG: d.pg}.Listen,
		Logger:  d.log.With("component", "settings"),
		OnState: d.databaseState,
	})
}
