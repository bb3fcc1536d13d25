package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/console"
)

// componentCounters is the writing of this node's dashboard counters to the shared database (cluster mode
// only): failed while the writes fail, so that the other nodes' dashboards flag this node's figures stale.
const componentCounters = "counters"

// countersEvery is how often a node writes its dashboard counters to the shared database; countersTimeout
// bounds each write, and the last one at shutdown.
const (
	countersEvery   = 30 * time.Second
	countersTimeout = 5 * time.Second
)

// clusterCounters is the dashboard counters' shared store in cluster mode; nil on a single node.
func (d *Daemon) clusterCounters() console.CounterStore {
	if d.pg == nil {
		return nil
	}
	return console.PostgresCounters{PG: d.pg}
}

// runCounters writes this node's dashboard counters to the shared database every countersEvery and once
// more when ctx ends. The counters are in memory (rebuilt from the queue's history at start) and each write
// replaces the node's rows of the last 25 hours, so a write that fails is made good by the next one: the
// database is never waited for by mail, and an outage only delays the other nodes' view of this one.
func (d *Daemon) runCounters(ctx context.Context) {
	st := d.clusterCounters()
	migrated := false
	var failingSince time.Time
	publish := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, countersTimeout)
		defer cancel()
		var err error
		if !migrated {
			if err = (console.PostgresCounters{PG: d.pg}).Migrate(ctx); err == nil {
				migrated = true
			}
		}
		now := d.now()
		if err == nil {
			err = st.Publish(ctx, d.cfg.Node, now, d.Console.HourCounters(now))
		}
		if err != nil {
			if failingSince.IsZero() {
				failingSince = now
				d.log.Warn("dashboard counters not written to the shared database; the other nodes show this node's figures as stale until a write succeeds", "err", err)
			}
			d.comps.set(componentCounters, admin.ComponentFailed, fmt.Sprintf("dashboard counters not written to the shared database since %s: %v", failingSince.UTC().Format(time.RFC3339), err))
			return
		}
		if !failingSince.IsZero() {
			d.log.Info("dashboard counters written to the shared database again", "failing_since", failingSince.UTC())
			failingSince = time.Time{}
		}
		d.comps.set(componentCounters, admin.ComponentRunning, "")
	}
	publish(ctx)
	t := time.NewTicker(countersEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			publish(context.Background())
			return
		case <-t.C:
			publish(ctx)
		}
	}
}
