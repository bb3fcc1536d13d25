package mtastscache

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// eachStore runs the contract test f against every Store implementation; open returns a new handle on the
// test's database each time, as a restarted node would.
func eachStore(t *testing.T, f func(t *testing.T, open func(t *testing.T) Store)) {
	t.Run("sqlite", func(t *testing.T) {
		db := storetest.SQLite(t)
		f(t, func(*testing.T) Store { return SQLiteStore{DB: db} })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := storetest.PostgresDSN(t)
		f(t, func(t *testing.T) Store {
			pg, err := store.OpenPostgres(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pg.Close)
			return PostgresStore{PG: pg}
		})
	})
}

func loadSorted(t *testing.T, s Store) []Record {
	t.Helper()
	recs, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Domain < recs[j].Domain })
	return recs
}

// TestStoreContract_STS63: what one handle saves, another (a restart) loads unchanged, zero times included;
// a save replaces the domain's record; Used only moves last_used forward; Delete removes one domain;
// migrations run again are a no-op.
func TestStoreContract_STS63(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		ctx := context.Background()
		s := open(t)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 3, 10, 12, 0, 0, 123456789, time.UTC)
		a := Record{Domain: "example.com", ID: "1", Policy: "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
			Mode: mtasts.ModeEnforce, MaxAge: 86400 * time.Second, Fetched: at, Expires: at.Add(24 * time.Hour)}
		b := Record{Domain: "xn--bcher-kva.example", ID: "b", Policy: "version: STSv1\nmode: testing\nmx: *.example\nmax_age: 600\n",
			Mode: mtasts.ModeTesting, MaxAge: 600 * time.Second, Fetched: at, Expires: at.Add(10 * time.Minute),
			LastUsed: at, LastRefreshAt: at.Add(time.Minute), LastRefreshError: "policy host unreachable", Failures: 2}
		for _, r := range []Record{a, b} {
			if err := s.Save(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		s2 := open(t)
		if err := s2.Migrate(ctx); err != nil {
			t.Fatalf("migrating again: %v", err)
		}
		if d := cmp.Diff([]Record{a, b}, loadSorted(t, s2)); d != "" {
			t.Fatalf("loaded (-saved +loaded):\n%s", d)
		}

		a.ID, a.Fetched = "2", at.Add(time.Hour)
		if err := s2.Save(ctx, a); err != nil {
			t.Fatal(err)
		}
		dom := address.MustParseDomain("xn--bcher-kva.example")
		if err := s2.Used(ctx, dom, at.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s2.Used(ctx, dom, at.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		b.LastUsed = at.Add(2 * time.Hour)
		if d := cmp.Diff([]Record{a, b}, loadSorted(t, s)); d != "" {
			t.Fatalf("after replace and Used (-want +got):\n%s", d)
		}

		if err := s.Delete(ctx, address.MustParseDomain("example.com")); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, address.MustParseDomain("absent.example")); err != nil {
			t.Fatalf("deleting an absent domain: %v", err)
		}
		if d := cmp.Diff([]Record{b}, loadSorted(t, s2)); d != "" {
			t.Fatalf("after Delete (-want +got):\n%s", d)
		}
	})
}

// TestStoreContractGet: Get returns the record Load would, and says when there is none.
func TestStoreContractGet(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		ctx := context.Background()
		s := open(t)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		get := func(d string) (Record, bool, error) {
			switch g := s.(type) {
			case SQLiteStore:
				return g.Get(ctx, address.MustParseDomain(d))
			case PostgresStore:
				return g.Get(ctx, address.MustParseDomain(d))
			}
			t.Fatalf("no Get on %T", s)
			return Record{}, false, nil
		}
		at := time.Date(2026, 3, 10, 12, 0, 0, 5, time.UTC)
		r := Record{Domain: "example.com", ID: "1", Policy: "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
			Mode: mtasts.ModeEnforce, MaxAge: 86400 * time.Second, Fetched: at, Expires: at.Add(24 * time.Hour),
			LastUsed: at, LastRefreshAt: at, LastRefreshError: "x", Failures: 1}
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, ok, err := get("example.com")
		if err != nil || !ok {
			t.Fatalf("Get = %v, %v", ok, err)
		}
		if d := cmp.Diff(r, got); d != "" {
			t.Errorf("Get (-saved +got):\n%s", d)
		}
		if _, ok, err := get("absent.example"); ok || err != nil {
			t.Errorf("Get(absent) = %v, %v; want false, nil", ok, err)
		}
	})
}

// TestPostgresLease: one holder at a time; the holder renews; another takes it over only once it has run out.
func TestPostgresLease(t *testing.T) {
	ctx := context.Background()
	s := PostgresStore{PG: storetest.Postgres(t)}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		holder string
		now    time.Time
		want   bool
	}{
		{"a", at, true},                      // free
		{"b", at.Add(time.Minute), false},    // a holds it until at+10m
		{"a", at.Add(5 * time.Minute), true}, // a renews until at+15m
		{"b", at.Add(12 * time.Minute), false},
		{"b", at.Add(16 * time.Minute), true}, // a's ran out
		{"a", at.Add(17 * time.Minute), false},
	}
	for i, st := range steps {
		got, err := s.Lease(ctx, "refresh", st.holder, st.now, st.now.Add(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Errorf("step %d: Lease(%s at %v) = %v, want %v", i, st.holder, st.now, got, st.want)
		}
	}
	if ok, err := s.Lease(ctx, "other", "a", at, at.Add(time.Minute)); !ok || err != nil {
		t.Errorf("another lease name: %v, %v; want its own lease", ok, err)
	}
}
