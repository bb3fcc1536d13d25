package settings

import (
	"context"
	"testing"
	"time"
)

// commitOn stages and commits key = value on s and returns the new generation.
func commitOn(t *testing.T, s *Store, key, value string) int {
	t.Helper()
	if err := s.Set(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Commit(context.Background(), "from another node", "alice")
	if err != nil {
		t.Fatal(err)
	}
	return snap.Generation
}

// follow runs Follow for s until the test ends and returns a channel of the snapshots its watchers see.
func follow(t *testing.T, o FollowOptions) <-chan Snapshot {
	t.Helper()
	seen := make(chan Snapshot, 16)
	o.Store.Watch(func(s Snapshot) { seen <- s })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Follow(ctx, o) }()
	t.Cleanup(func() { cancel(); <-done })
	return seen
}

func waitGeneration(t *testing.T, seen <-chan Snapshot, gen int, within time.Duration) Snapshot {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case s := <-seen:
			if s.Generation == gen {
				return s
			}
		case <-deadline:
			t.Fatalf("generation %d not in force on the following node within %s", gen, within)
		}
	}
}

// TestFollowNotifiedCommitTakesEffectWithin2s: with polling effectively off, a commit through one store is in
// force on another store of the same PostgreSQL database within 2 s, by LISTEN/NOTIFY alone; a rollback too.
func TestFollowNotifiedCommitTakesEffectWithin2s(t *testing.T) {
	at := postgresAt(t)
	pgst := at(t).(PostgresStorage)
	a := openStore(t, at, nil)
	b, err := OpenStorage(t.Context(), pgst, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := follow(t, FollowOptions{Store: b, Listen: pgst.Listen, PollInterval: time.Hour})
	// Follow reloads once when its LISTEN connection is up; wait for that, so the commit below is not
	// picked up by the reload at connection time instead of the notification.
	waitListening(t, pgst)

	gen := commitOn(t, a, "Sender.EnableMTASTS", "false")
	if s := waitGeneration(t, seen, gen, 2*time.Second); s.MTASTSEnabled() {
		t.Errorf("generation %d on b has MTA-STS enabled, want the committed false", gen)
	}
	res, err := a.Rollback(context.Background(), 1, "", "bob", RefuseStaged)
	if err != nil {
		t.Fatal(err)
	}
	if s := waitGeneration(t, seen, res.Generation, 2*time.Second); !s.MTASTSEnabled() {
		t.Errorf("rollback generation %d on b has MTA-STS disabled", res.Generation)
	}
}

// waitListening waits until a connection of the database listens on NotifyChannel.
func waitListening(t *testing.T, st PostgresStorage) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := st.PG.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN `+NotifyChannel+`'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no connection listens for settings commits")
}

// TestFollowPollsWithoutNotifications: with no notifications at all, polling alone brings a commit made
// through another store into force.
func TestFollowPollsWithoutNotifications(t *testing.T) {
	eachStorage(t, func(t *testing.T, at storageAt) {
		a := openStore(t, at, nil)
		b := openStore(t, at, nil)
		seen := follow(t, FollowOptions{Store: b, PollInterval: 20 * time.Millisecond})
		gen := commitOn(t, a, "TLSRPT.OrganizationName", "Acme")
		if s := waitGeneration(t, seen, gen, 10*time.Second); s.Get("TLSRPT.OrganizationName") != "Acme" {
			t.Errorf("b runs %+v, want the committed organisation", s)
		}
	})
}
