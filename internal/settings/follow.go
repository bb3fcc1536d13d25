package settings

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultPollInterval is how often Follow reads the newest generation when no notification came: the
// fallback that bounds propagation when notifications are lost (a dropped LISTEN connection, a proxy that
// does not pass them).
const DefaultPollInterval = time.Second

// reloadTimeout bounds one read of the newest generation.
const reloadTimeout = 5 * time.Second

// FollowOptions configure Follow.
type FollowOptions struct {
	Store *Store
	// Listen, when set, blocks delivering a call to notify for every commit announced by any node, until ctx
	// ends or its connection fails (PostgresStorage.Listen). Follow re-establishes it after a failure.
	Listen func(ctx context.Context, notify func()) error
	// PollInterval is how often the newest generation is read regardless; 0 means DefaultPollInterval.
	PollInterval time.Duration
	Logger       *slog.Logger
	// OnState, when set, is told the outcome of every read of the newest generation: nil when the storage
	// answered, the error otherwise.
	OnState func(err error)
}

// Follow keeps o.Store on the newest committed generation of its shared storage until ctx ends, so that a
// commit or rollback made on any node of a cluster takes effect on this one: at once when notified, and at the
// latest after one poll interval otherwise. A storage that cannot be read is logged once per outage and the
// generation in force stays in force: settings never fall back to defaults.
func Follow(ctx context.Context, o FollowOptions) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := o.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	wake := make(chan struct{}, 1)
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	if o.Listen != nil {
		go listenLoop(ctx, o.Listen, notify, log)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		before := o.Store.Current().Generation
		// Bounded, so that a database that stops answering (a partition rather than a refusal) is reported
		// as unreadable instead of holding the loop.
		rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
		snap, err := o.Store.Reload(rctx)
		cancel()
		if o.OnState != nil && ctx.Err() == nil {
			o.OnState(err)
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				log.Warn("settings: cannot read the shared settings; the generation in force stays in force", "generation", snap.Generation, "err", err)
			}
			failing = true
			continue
		case failing:
			log.Info("settings: shared settings readable again", "generation", snap.Generation)
			failing = false
		}
		if snap.Generation != before {
			log.Info("settings: generation committed on another node now in force", "generation", snap.Generation, "previous", before)
		}
	}
}

// listenLoop keeps listen running, reconnecting with a capped backoff, and asks for a reload after each
// (re)connection since notifications sent while disconnected are lost.
func listenLoop(ctx context.Context, listen func(context.Context, func()) error, notify func(), log *slog.Logger) {
	backoff := time.Second
	for {
		notify()
		started := time.Now()
		err := listen(ctx, notify)
		if ctx.Err() != nil {
			return
		}
		log.Warn("settings: commit notifications interrupted; polling until they resume", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second // it was up for a while: this is a new outage
		} else {
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// Listen implements FollowOptions.Listen for PostgreSQL: it LISTENs on NotifyChannel on a connection of its
// own and calls notify for each notification until ctx ends or the connection fails.
func (s PostgresStorage) Listen(ctx context.Context, notify func()) error {
	return listenPostgres(ctx, s.PG.Pool, notify)
}

func listenPostgres(ctx context.Context, pool *pgxpool.Pool, notify func()) error {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("settings: listen: %w", err)
	}
	// The connection leaves the pool: it is in LISTEN state and must not serve queries for others.
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("settings: listen: %w", err)
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("settings: listen: %w", err)
		}
		notify()
	}
}
