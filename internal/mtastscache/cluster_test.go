package mtastscache

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
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
	c, err := New(context.Background(), Options{
		Store:    PostgresStore{PG: pg},
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
