package nodes

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// eachStorage runs the contract test f against every Storage; open returns a new handle on the test's
// database each time, as another node (or a restart) would.
func eachStorage(t *testing.T, f func(t *testing.T, open func(t *testing.T) Storage)) {
	t.Run("sqlite", func(t *testing.T) {
		db := storetest.SQLite(t)
		f(t, func(t *testing.T) Storage {
			s := SQLiteStorage{DB: db}
			if err := s.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := storetest.PostgresDSN(t)
		f(t, func(t *testing.T) Storage {
			pg, err := store.OpenPostgres(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pg.Close)
			s := PostgresStorage{PG: pg}
			if err := s.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

// TestRegistryContract: a heartbeat replaces the node's row; every handle lists every node, by name, with
// what it wrote (times to the millisecond); Forget removes one and names an unknown one.
func TestRegistryContract(t *testing.T) {
	eachStorage(t, func(t *testing.T, open func(t *testing.T) Storage) {
		ctx := context.Background()
		a, b := open(t), open(t)
		t0 := time.UnixMilli(1_800_000_000_123)
		n2 := Node{Name: "mx2", AdminURL: "https://mx2.example:8025", Version: "v1.2.0", Running: 3, Committed: 4,
			Queued: 17, Started: t0, Heartbeat: t0.Add(time.Second), TLS: TLSMix{Verified: 5, Encrypted: 2, Plaintext: 1}}
		n1 := Node{Name: "mx1", AdminURL: "http://127.0.0.1:1", Version: "(devel)", Running: 4, Committed: 4, Started: t0, Heartbeat: t0}
		for _, n := range []Node{n2, n1} {
			if _, err := a.Beat(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		n1.Queued, n1.Heartbeat, n1.TLS.Plaintext = 9, t0.Add(5*time.Second), 3
		if _, err := b.Beat(ctx, n1); err != nil {
			t.Fatal(err)
		}
		got, err := a.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]Node{n1, n2}, got); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
		if err := b.Forget(ctx, "mx2"); err != nil {
			t.Fatal(err)
		}
		if err := b.Forget(ctx, "mx2"); !errors.Is(err, ErrUnknownNode) {
			t.Errorf("Forget of a forgotten node: %v, want ErrUnknownNode", err)
		}
		got, _ = a.List(ctx)
		if len(got) != 1 || got[0].Name != "mx1" {
			t.Errorf("after Forget: %+v, want mx1 alone", got)
		}
		if err := a.Migrate(ctx); err != nil {
			t.Errorf("migrations run again: %v", err)
		}
	})
}

// TestClusterSecretMadeOnce: of several nodes starting together, each offering a fresh secret, one wins
// and every node reads the same; a later start keeps it.
func TestClusterSecretMadeOnce(t *testing.T) {
	eachStorage(t, func(t *testing.T, open func(t *testing.T) Storage) {
		const n = 4
		handles := make([]Storage, n)
		for i := range handles {
			handles[i] = open(t)
		}
		got := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { got[i], errs[i] = handles[i].Secret(context.Background(), NewSecret()) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if got[i] != got[0] || len(got[i]) != 64 {
				t.Fatalf("secrets %q: want one 64-digit secret for all", got)
			}
		}
		again, err := open(t).Secret(context.Background(), NewSecret())
		if err != nil || again != got[0] {
			t.Errorf("later start: %q, %v; want %q", again, err, got[0])
		}
	})
}

// TestAssessFlagsLaggingAndSilentNodes: a node running an older generation than any node has seen
// committed lags; a node whose heartbeat is older than the bound is silent; a current one has no flag.
func TestAssessFlagsLaggingAndSilentNodes(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	list := []Node{
		{Name: "mx3", Running: 7, Committed: 7, Heartbeat: now.Add(-time.Minute)},
		{Name: "mx1", Running: 7, Committed: 7, Heartbeat: now.Add(-time.Second)},
		{Name: "mx2", Running: 6, Committed: 6, Heartbeat: now},
	}
	long := func(int) time.Time { return now.Add(-time.Hour) } // every generation committed long ago
	got := Assess(list, "mx1", 0, long, now, DefaultSilentAfter, DefaultLagAfter)
	want := map[string][]Flag{"mx1": nil, "mx2": {FlagLagging}, "mx3": {FlagSilent}}
	if len(got) != 3 || got[0].Name != "mx1" || !got[0].Self || got[1].Self {
		t.Fatalf("Assess: %+v: want mx1 (self), mx2, mx3", got)
	}
	for _, v := range got {
		if diff := cmp.Diff(want[v.Name], v.Flags); diff != "" {
			t.Errorf("%s flags (-want +got):\n%s", v.Name, diff)
		}
		if (v.Problem == "") != (len(v.Flags) == 0) {
			t.Errorf("%s: problem %q with flags %v", v.Name, v.Problem, v.Flags)
		}
	}
	// The database's newest generation counts even when no node has seen it yet.
	if got := Assess(list[1:2], "mx1", 8, long, now, DefaultSilentAfter, DefaultLagAfter); len(got[0].Flags) != 1 || got[0].Flags[0] != FlagLagging {
		t.Errorf("node behind the database's generation 8: flags %v, want lagging", got[0].Flags)
	}
}

// TestBeatReturnsTheRowItReplaced: a heartbeat returns the instance, URL and times of the row it replaced
// (none for the first), so that two processes writing one name each find the other's; the instance and the
// clash are listed.
func TestBeatReturnsTheRowItReplaced(t *testing.T) {
	eachStorage(t, func(t *testing.T, open func(t *testing.T) Storage) {
		ctx := context.Background()
		a, b := open(t), open(t)
		t0 := time.UnixMilli(1_800_000_000_000)
		na := Node{Name: "mx1", Instance: "aaaa", AdminURL: "https://a.example:8025", Started: t0, Heartbeat: t0}
		nb := Node{Name: "mx1", Instance: "bbbb", AdminURL: "https://b.example:8025", Started: t0.Add(time.Second),
			Heartbeat: t0.Add(2 * time.Second), Clash: "two processes"}
		prev, err := a.Beat(ctx, na)
		if err != nil || prev != (Node{}) {
			t.Fatalf("first heartbeat: %+v, %v; want no row replaced", prev, err)
		}
		prev, err = b.Beat(ctx, nb)
		want := Node{Name: "mx1", Instance: "aaaa", AdminURL: "https://a.example:8025", Started: t0, Heartbeat: t0}
		if err != nil || !cmp.Equal(prev, want) {
			t.Fatalf("heartbeat of another process: %+v, %v; want %+v", prev, err, want)
		}
		got, err := a.List(ctx)
		if err != nil || len(got) != 1 || got[0].Instance != "bbbb" || got[0].Clash != "two processes" {
			t.Errorf("List: %+v, %v; want b's row with its instance and clash", got, err)
		}
	})
}

// TestClashesOnlyWhenAnotherProcessWroteSinceOurLastBeat: the row of a process that ran before this one
// (a restart) is no clash at the first heartbeat; a row written by another instance after this process's own
// heartbeat is, unless it is older than the silence bound.
func TestClashesOnlyWhenAnotherProcessWroteSinceOurLastBeat(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	other := Node{Name: "mx1", Instance: "old", Heartbeat: now.Add(-time.Second)}
	for _, c := range []struct {
		what     string
		prev     Node
		lastBeat time.Time
		want     bool
	}{
		{"first heartbeat after a restart", other, time.Time{}, false},
		{"another process wrote since our heartbeat", other, now.Add(-5 * time.Second), true},
		{"our own row", Node{Name: "mx1", Instance: "me", Heartbeat: now.Add(-5 * time.Second)}, now.Add(-5 * time.Second), false},
		{"no row (forgotten)", Node{}, now.Add(-5 * time.Second), false},
		{"a row older than the bound", Node{Name: "mx1", Instance: "old", Heartbeat: now.Add(-time.Minute)}, now.Add(-5 * time.Second), false},
	} {
		if got := Clashes(c.prev, "me", c.lastBeat, now, DefaultSilentAfter); got != c.want {
			t.Errorf("%s: Clashes %v, want %v", c.what, got, c.want)
		}
	}
	v := Assess([]Node{{Name: "mx1", Heartbeat: now, Clash: "two processes run as node"}}, "mx1", 0, nil, now, DefaultSilentAfter, DefaultLagAfter)
	if len(v[0].Flags) != 1 || v[0].Flags[0] != FlagNameClash || v[0].Problem != "two processes run as node" {
		t.Errorf("Assess of a clashing row: %+v", v[0])
	}
}

// TestLaggingOnlyAfterTheBound: a node behind the newest generation is not flagged while that generation's
// commit is younger than the bound (it propagates), and is flagged once it is older, the clock moving on;
// a generation whose commit time is unknown flags at once.
func TestLaggingOnlyAfterTheBound(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	committedAt := map[int]time.Time{7: t0.Add(-time.Hour), 8: t0}
	at := func(gen int) time.Time { return committedAt[gen] }
	list := []Node{{Name: "mx1", Running: 7, Committed: 8, Heartbeat: t0}}
	for _, c := range []struct {
		now  time.Time
		want []Flag
	}{
		{t0, nil},
		{t0.Add(DefaultLagAfter), nil},
		{t0.Add(DefaultLagAfter + time.Millisecond), []Flag{FlagLagging}},
	} {
		got := Assess(list, "mx1", 8, at, c.now, time.Hour, DefaultLagAfter)
		if diff := cmp.Diff(c.want, got[0].Flags); diff != "" {
			t.Errorf("%s after the commit (-want +got):\n%s", c.now.Sub(t0), diff)
		}
	}
	list[0].Running = 6 // behind since generation 7, an hour ago
	if got := Assess(list, "mx1", 8, at, t0, time.Hour, DefaultLagAfter); !slices.Equal(got[0].Flags, []Flag{FlagLagging}) {
		t.Errorf("node behind since an hour: flags %v, want lagging", got[0].Flags)
	}
	list[0].Running = 8
	if got := Assess(list, "mx1", 9, at, t0, time.Hour, DefaultLagAfter); !slices.Equal(got[0].Flags, []Flag{FlagLagging}) {
		t.Errorf("node behind a generation of unknown commit time: flags %v, want lagging", got[0].Flags)
	}
}
