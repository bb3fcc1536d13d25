package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tracking"
)

// componentTracking is the hand-over of finished messages to the cluster's shared tracking (cluster mode
// only): failed while it fails, with the number of messages waiting in the node's outbox; degraded while
// the shared table's expired messages cannot be pruned.
const componentTracking = "tracking"

// trackingEvery is how often the outbox is handed over; trackingTimeout bounds each write and each search
// of the shared table.
const (
	trackingEvery   = 2 * time.Second
	trackingTimeout = 5 * time.Second
)

// trace finds finished messages: on a single node in the queue's archive; in a cluster in the shared
// tracking table (every node's messages) and in this node's archive (its messages not yet handed over).
// When the shared table does not answer, this node's matches are returned with a *queue.PartialTraceError.
func (d *Daemon) trace(ctx context.Context, tq queue.TraceQuery) ([]queue.Traced, error) {
	local, err := d.Queue.Trace(ctx, tq)
	if d.pg == nil || err != nil {
		return local, err
	}
	sctx, cancel := context.WithTimeout(ctx, trackingTimeout)
	defer cancel()
	shared, err := tracking.Store{PG: d.pg}.Trace(sctx, tq)
	limit := tq.Limit
	if limit <= 0 {
		limit = 50
	}
	if err != nil {
		if errors.Is(err, queue.ErrBadQuery) {
			return nil, err
		}
		return tracking.Merge(d.cfg.Node, nil, local, limit), &queue.PartialTraceError{Err: err}
	}
	return tracking.Merge(d.cfg.Node, shared, local, limit), nil
}

// runTracking hands the messages this node finishes over to the shared tracking until ctx ends.
func (d *Daemon) runTracking(ctx context.Context) {
	p := &tracking.Publisher{
		Store: tracking.Store{PG: d.pg}, Outbox: d.Queue, Node: d.cfg.Node,
		Retention: d.cfg.Queue.TrackRetention.Duration(), Now: d.now, Logger: d.log.With("component", "tracking"),
		Every: trackingEvery, Timeout: trackingTimeout,
	}
	var failing bool
	var pruneErr error
	p.PruneState = func(err error) {
		if err != nil && pruneErr == nil {
			d.log.Warn("tracking: expired messages not pruned from the shared database; trying again later", "err", err)
		} else if err == nil && pruneErr != nil {
			d.log.Info("tracking: expired messages pruned from the shared database again")
		}
		pruneErr = err
	}
	p.State = func(err error, waiting int, oldest time.Time) {
		if err != nil {
			if !failing {
				d.log.Warn("tracking: finished messages kept in this node's outbox until the shared database answers", "waiting", waiting, "err", err)
				failing = true
			}
			reason := fmt.Sprintf("%d finished messages not yet in the cluster's shared tracking", waiting)
			if !oldest.IsZero() {
				reason += fmt.Sprintf(" (the oldest finished %s)", oldest.UTC().Format(time.RFC3339))
			}
			d.comps.set(componentTracking, admin.ComponentFailed, reason+": "+err.Error())
			return
		}
		if failing {
			d.log.Info("tracking: outbox handed over to the shared database")
			failing = false
		}
		if pruneErr != nil {
			d.comps.set(componentTracking, admin.ComponentDegraded,
				"finished messages handed over, but expired ones not pruned from the shared tracking: "+pruneErr.Error())
			return
		}
		d.comps.set(componentTracking, admin.ComponentRunning, "")
	}
	p.Run(ctx)
}
