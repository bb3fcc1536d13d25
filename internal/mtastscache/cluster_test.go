package mtastscache

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// clusterNode is one node's cache in cluster mode: the shared store in the PostgreSQL database dsn, its
// local copy in its own SQLite file, the world (clock, DNS, policy hosts) of e.
type clusterNode struct {
	name      string
	localPath string
	cache     *Cache
}

// startNode opens (or, with the same localPath, reopens) a node's cache, as a (re)started gateway does.
func (e *env) startNode(t *testing.T, dsn, name, localPath string) *clusterNode {
	t.Helper()
	return e.startNodeWith(t, dsn, name, localPath, nil)
}

// startNodeWith is startNode with the shared store passed through wrap (if not nil).
func (e *env) startNodeWith(t *testing.T, dsn, name, localPath string, wrap func(SharedStore) SharedStore) *clusterNode {
	t.Helper()
	pg, err := store.NewPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	db, err := store.OpenSQLite(localPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var shared SharedStore = PostgresStore{PG: pg}
	if wrap != nil {
		shared = wrap(shared)
	}
	c, err := New(context.Background(), Options{
		Store:    shared,
		Local:    SQLiteStore{DB: db},
		Node:     name,
		Resolver: e.dns,
		Fetcher:  e.fetcher,
		Now:      e.clock.Now,
		Logger:   slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	return &clusterNode{name: name, localPath: localPath, cache: c}
}

func (n *clusterNode) get(t *testing.T, domain string) Lookup {
	t.Helper()
	l, err := n.cache.Get(context.Background(), address.MustParseDomain(domain))
	if err != nil {
		t.Fatalf("node %s: Get(%s): %v", n.name, domain, err)
	}
	return l
}

// TestClusterPolicyFetchedOnceReadByAll: a policy node A fetched is what node B applies without fetching it
// again, while B still looks up the TXT record at each use; a new id is fetched by the node that sees it
// first and read by the other.
func TestClusterPolicyFetchedOnceReadByAll(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	dir := t.TempDir()
	a := e.startNode(t, dsn, "a", filepath.Join(dir, "a.db"))
	b := e.startNode(t, dsn, "b", filepath.Join(dir, "b.db"))
	e.publish("example.com", "1", pEnf(86400))

	check(t, "node A", a.get(t, "example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	txt := e.dns.queryCount("_mta-sts.example.com")
	check(t, "node B", b.get(t, "example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache})
	checkFetches(t, e, "example.com", 1)
	if got := e.dns.queryCount("_mta-sts.example.com"); got != txt+1 {
		t.Errorf("node B looked up the TXT record %d times, want once per use", got-txt)
	}

	e.clock.Advance(time.Hour)
	e.publish("example.com", "2", pTest)
	check(t, "node B, new id", b.get(t, "example.com"), summary{Mode: mtasts.ModeTesting, ID: "2", Source: SourceFetched})
	check(t, "node A, new id", a.get(t, "example.com"), summary{Mode: mtasts.ModeTesting, ID: "2", Source: SourceCache})
	checkFetches(t, e, "example.com", 2)
}

// TestClusterRefreshUnderLease: of two nodes due to refresh the same policy, only the holder of the refresh
// lease fetches, and the other sees the refreshed policy at its next sync; when the holder stops renewing,
// the other takes the lease over once it has run out.
func TestClusterRefreshUnderLease(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	dir := t.TempDir()
	a := e.startNode(t, dsn, "a", filepath.Join(dir, "a.db"))
	b := e.startNode(t, dsn, "b", filepath.Join(dir, "b.db"))
	// max_age 600 s: due for refresh every 5 minutes (half its max_age).
	e.publish("example.com", "1", pEnf(600))
	a.get(t, "example.com")
	b.get(t, "example.com")
	ctx := context.Background()
	refresh := func(n *clusterNode) int {
		t.Helper()
		got, err := n.cache.RefreshDue(ctx)
		if err != nil {
			t.Fatalf("node %s: RefreshDue: %v", n.name, err)
		}
		return got
	}

	e.clock.Advance(6 * time.Minute)
	if na := refresh(a); na != 1 {
		t.Errorf("node A refreshed %d, want 1 (it takes the lease)", na)
	}
	dom := address.MustParseDomain("example.com")
	e.clock.Advance(time.Minute)
	if nb := refresh(b); nb != 0 {
		t.Errorf("node B refreshed %d, want 0 (nothing due after A's refresh)", nb)
	}
	if ent, err := b.cache.Show(ctx, dom); err != nil || !ent.Fetched.Equal(t0.Add(6*time.Minute)) {
		t.Errorf("node B after A's refresh: fetched %v, %v; want A's fetch at %v", ent.Fetched, err, t0.Add(6*time.Minute))
	}
	checkFetches(t, e, "example.com", 2)

	// Due again, but A holds the lease: B does not refresh.
	e.clock.Advance(6 * time.Minute)
	if nb := refresh(b); nb != 0 {
		t.Errorf("node B refreshed %d while A holds the lease, want 0", nb)
	}
	checkFetches(t, e, "example.com", 2)

	// A stops (it never renews); once its lease has run out B takes it and refreshes.
	e.clock.Advance(3 * DefaultRefreshInterval)
	if nb := refresh(b); nb != 1 {
		t.Errorf("node B refreshed %d after A's lease ran out, want 1", nb)
	}
	checkFetches(t, e, "example.com", 3)
	if na := refresh(a); na != 0 {
		t.Errorf("node A refreshed %d after B took the lease over, want 0", na)
	}
}

// TestClusterNodeStartsFromLocalCopyWhileDatabaseDown: a node that restarts while the shared database is
// unreachable starts from its local copy and keeps applying the enforce policy it knew, even with the policy
// host gone (RFC 8461 Section 10: an attacker who blocks the database and the policy host must not get a
// downgrade). A policy it fetches meanwhile is written to the shared store once the database returns.
func TestClusterNodeStartsFromLocalCopyWhileDatabaseDown(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	dir := t.TempDir()
	a := e.startNode(t, dsn, "a", filepath.Join(dir, "a.db"))
	e.publish("example.com", "1", pEnf(86400))
	a.get(t, "example.com")

	restore := storetest.CutOff(t, dsn)
	e.policy.serve("example.com", http.StatusNotFound, "")
	a = e.startNode(t, dsn, "a", a.localPath)
	check(t, "restarted with the database down", a.get(t, "example.com"),
		summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache})
	e.publish("other.test", "x", pTest)
	check(t, "new policy with the database down", a.get(t, "other.test"),
		summary{Mode: mtasts.ModeTesting, ID: "x", Source: SourceFetched})

	restore()
	if err := a.cache.SyncDue(context.Background()); err != nil {
		t.Fatalf("sync after the database returned: %v", err)
	}
	b := e.startNode(t, dsn, "b", filepath.Join(dir, "b.db"))
	check(t, "node B reads what A fetched during the outage", b.get(t, "other.test"),
		summary{Mode: mtasts.ModeTesting, ID: "x", Source: SourceCache})
	checkFetches(t, e, "other.test", 1)
}

// TestClusterNodeRefreshesItselfWhileDatabaseDown: with the shared store unreachable no lease can be taken,
// and each node refreshes its own policies, as a single node does, so that an enforce policy in use does not
// lapse during a long outage (RFC 8461 Section 10.2).
func TestClusterNodeRefreshesItselfWhileDatabaseDown(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	a := e.startNode(t, dsn, "a", filepath.Join(t.TempDir(), "a.db"))
	e.publish("example.com", "1", pEnf(600))
	a.get(t, "example.com")

	storetest.CutOff(t, dsn)
	e.clock.Advance(6 * time.Minute)
	n, err := a.cache.RefreshDue(context.Background())
	if n != 1 || err == nil {
		t.Errorf("RefreshDue with the database down = %d, %v; want 1 refresh and the database error", n, err)
	}
	checkFetches(t, e, "example.com", 2)
}

// hangingStore is a shared store that, once hang is set, never answers (a database dropping packets rather
// than refusing): every call blocks until its context ends. It records the calls that began after another
// hung call had already given up, that is, calls made one behind another on a database known to hang.
type hangingStore struct {
	SharedStore
	hang atomic.Bool

	mu      sync.Mutex
	ended   int      // hung calls that have returned
	late    []string // hung calls begun after one had returned
	inFlght int
	changed chan struct{} // closed and replaced whenever inFlght changes
}

func newHangingStore(s SharedStore) *hangingStore {
	return &hangingStore{SharedStore: s, changed: make(chan struct{})}
}

func (h *hangingStore) block(ctx context.Context, op string) error {
	h.mu.Lock()
	if h.ended > 0 {
		h.late = append(h.late, op)
	}
	h.inFlght++
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	h.ended++
	h.inFlght--
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	return fmt.Errorf("%s: no answer: %w", op, ctx.Err())
}

// waitInFlight waits until at least n calls are blocked.
func (h *hangingStore) waitInFlight(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		h.mu.Lock()
		got, ch := h.inFlght, h.changed
		h.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d calls to the shared store in flight, want %d", got, n)
		}
	}
}

func (h *hangingStore) Load(ctx context.Context) ([]Record, error) {
	if h.hang.Load() {
		return nil, h.block(ctx, "Load")
	}
	return h.SharedStore.Load(ctx)
}

func (h *hangingStore) Save(ctx context.Context, r Record) error {
	if h.hang.Load() {
		return h.block(ctx, "Save "+r.Domain)
	}
	return h.SharedStore.Save(ctx, r)
}

func (h *hangingStore) Used(ctx context.Context, d address.Domain, at time.Time) error {
	if h.hang.Load() {
		return h.block(ctx, "Used "+d.String())
	}
	return h.SharedStore.Used(ctx, d, at)
}

func (h *hangingStore) Delete(ctx context.Context, d address.Domain) error {
	if h.hang.Load() {
		return h.block(ctx, "Delete "+d.String())
	}
	return h.SharedStore.Delete(ctx, d)
}

func (h *hangingStore) Get(ctx context.Context, d address.Domain) (Record, bool, error) {
	if h.hang.Load() {
		return Record{}, false, h.block(ctx, "Get "+d.String())
	}
	return h.SharedStore.Get(ctx, d)
}

func (h *hangingStore) Lease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	if h.hang.Load() {
		return false, h.block(ctx, "Lease")
	}
	return h.SharedStore.Lease(ctx, name, holder, now, until)
}

// TestClusterHungDatabaseHoldsNoDelivery: with the shared database hanging (no answer, no refusal) and a
// sync waiting on it, deliveries to several new domains fetch their policies concurrently, each waiting on
// the database at most once (its bounded read), never one behind another nor behind the sync: the database
// is not in the mail path. The policies they fetched reach the shared store once it answers again.
func TestClusterHungDatabaseHoldsNoDelivery(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	var h *hangingStore
	a := e.startNodeWith(t, dsn, "a", filepath.Join(t.TempDir(), "a.db"), func(s SharedStore) SharedStore {
		h = newHangingStore(s)
		return h
	})
	domains := []string{"example.com", "sub.example.com", "other.test", "new.test"}
	for _, d := range domains {
		e.publish(d, "1", pEnf(86400))
	}

	h.hang.Store(true)
	syncCtx, stopSync := context.WithCancel(context.Background())
	syncDone := make(chan error, 1)
	go func() { syncDone <- a.cache.SyncDue(syncCtx) }()
	h.waitInFlight(t, 1) // the sync is waiting on the database

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make([]Lookup, len(domains))
	errs := make([]error, len(domains))
	var wg sync.WaitGroup
	for i, d := range domains {
		wg.Go(func() { got[i], errs[i] = a.cache.Get(ctx, address.MustParseDomain(d)) })
	}
	wg.Wait()
	h.mu.Lock()
	late := h.late
	h.mu.Unlock()
	stopSync()
	<-syncDone

	for i, d := range domains {
		if errs[i] != nil {
			t.Errorf("Get(%s): %v", d, errs[i])
			continue
		}
		check(t, d, got[i], summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	}
	if len(late) > 0 {
		t.Errorf("deliveries waited on the hung database one behind another: calls %q began after an earlier one had timed out", late)
	}
	if a.cache.SharedErr() == nil {
		t.Error("SharedErr() = nil with the database hanging")
	}

	h.hang.Store(false)
	if err := a.cache.SyncDue(context.Background()); err != nil {
		t.Fatalf("sync after the database answers again: %v", err)
	}
	if err := a.cache.SharedErr(); err != nil {
		t.Errorf("SharedErr() after a successful sync = %v", err)
	}
	for _, d := range domains {
		r, ok, err := h.SharedStore.Get(context.Background(), address.MustParseDomain(d))
		if err != nil || !ok || r.ID != "1" {
			t.Errorf("shared store after the outage: %s = %+v, %v, %v; want the policy fetched during it", d, r, ok, err)
		}
	}
}

// TestClusterFlushStaysFlushedOnAStoppedNode: a policy flushed on node A while node B is stopped is not
// brought back by B, which held it in its local copy: B drops it when it starts, writes nothing of it to the
// shared store, and fetches the policy afresh at its next use. B keeps the enforce policy of a domain nobody
// flushed, even with that domain's policy host gone (RFC 8461 Section 10).
func TestClusterFlushStaysFlushedOnAStoppedNode(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	dir := t.TempDir()
	a := e.startNode(t, dsn, "a", filepath.Join(dir, "a.db"))
	b := e.startNode(t, dsn, "b", filepath.Join(dir, "b.db"))
	e.publish("example.com", "1", pEnf(86400))
	e.publish("other.test", "k", pEnf(86400))
	for _, d := range []string{"example.com", "other.test"} {
		a.get(t, d)
		check(t, "node B before the flush, "+d, b.get(t, d), summary{Mode: mtasts.ModeEnforce, ID: map[string]string{"example.com": "1", "other.test": "k"}[d], Source: SourceCache})
	}

	// B stops; A flushes; the domain now publishes a testing policy under the same id (a flush is what an
	// administrator does when a policy changed without a new id).
	e.clock.Advance(time.Minute)
	ctx := context.Background()
	dom := address.MustParseDomain("example.com")
	if err := a.cache.Flush(ctx, dom); err != nil {
		t.Fatalf("node A: Flush: %v", err)
	}
	e.policy.serve("example.com", http.StatusOK, pTest)
	e.policy.serve("other.test", http.StatusNotFound, "")
	e.clock.Advance(time.Minute)

	b = e.startNode(t, dsn, "b", b.localPath)
	pg, err := store.NewPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if r, ok, err := (PostgresStore{PG: pg}).Get(ctx, dom); err != nil || ok {
		t.Fatalf("shared store after B started: %+v, %v, %v; want no record of the flushed policy", r, ok, err)
	}
	if n, err := pg.Exec(ctx, `SELECT 1 FROM mtasts_policies WHERE domain = 'example.com'`); err != nil || n.RowsAffected() != 0 {
		t.Fatalf("mtasts_policies rows for example.com after B started: %v, %v; want none", n, err)
	}
	if _, err := b.cache.Show(ctx, dom); err == nil {
		t.Errorf("node B still holds the flushed policy after its start")
	}
	fetches := e.policy.fetches("example.com")
	check(t, "node B after the flush", b.get(t, "example.com"), summary{Mode: mtasts.ModeTesting, ID: "1", Source: SourceFetched})
	checkFetches(t, e, "example.com", fetches+1)
	check(t, "node A reads what B fetched after the flush", a.get(t, "example.com"),
		summary{Mode: mtasts.ModeTesting, ID: "1", Source: SourceCache})
	check(t, "node B keeps the policy nobody flushed", b.get(t, "other.test"),
		summary{Mode: mtasts.ModeEnforce, ID: "k", Source: SourceCache})

	// A restart of B (its copy now holds the new fetch) keeps the policy fetched after the flush.
	b = e.startNode(t, dsn, "b", b.localPath)
	check(t, "node B restarted again", b.get(t, "example.com"), summary{Mode: mtasts.ModeTesting, ID: "1", Source: SourceCache})
}

// TestClusterFlushFailsWithoutTheDatabase: a flush the shared store cannot record fails and changes
// nothing: the node goes on applying the policy, which the other nodes still hold, and its local copy keeps
// it (a restart while the database is still down applies it, with the policy host gone).
func TestClusterFlushFailsWithoutTheDatabase(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	a := e.startNode(t, dsn, "a", filepath.Join(t.TempDir(), "a.db"))
	e.publish("example.com", "1", pEnf(86400))
	a.get(t, "example.com")

	restore := storetest.CutOff(t, dsn)
	if err := a.cache.Flush(context.Background(), address.MustParseDomain("example.com")); err == nil {
		t.Fatal("Flush with the database down succeeded")
	}
	e.policy.serve("example.com", http.StatusNotFound, "")
	a = e.startNode(t, dsn, "a", a.localPath)
	check(t, "restarted with the database down after the failed flush", a.get(t, "example.com"),
		summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache})
	restore()
	check(t, "after the failed flush", a.get(t, "example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache})
	checkFetches(t, e, "example.com", 1)
}
