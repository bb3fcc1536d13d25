package settings

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestOpenSharedFromReplica: every generation put in force is copied locally; with the shared database
// unreachable, a node opens from that copy (not from its seed) and staging and commits fail with
// ErrUnavailable; without a copy it does not open. When the database answers again the node catches up.
func TestOpenSharedFromReplica(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	pg, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	rep := Replica{Path: filepath.Join(t.TempDir(), "replica.json")}
	s, offline, err := OpenShared(ctx, PostgresStorage{PG: pg}, map[string]string{"TLSRPT.OrganizationName": "Seed"}, nil, rep)
	if err != nil || offline != nil {
		t.Fatalf("OpenShared = %v, %v", offline, err)
	}
	if err := s.Set(ctx, "TLSRPT.OrganizationName", "Committed"); err != nil {
		t.Fatal(err)
	}
	committed, err := s.Commit(ctx, "change", "test")
	if err != nil {
		t.Fatal(err)
	}

	restore := storetest.CutOff(t, dsn)
	pg2, err := store.NewPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg2.Close)
	s2, offline, err := OpenShared(ctx, PostgresStorage{PG: pg2}, map[string]string{"TLSRPT.OrganizationName": "Other seed"}, nil, rep)
	if err != nil || offline == nil {
		t.Fatalf("OpenShared with the database down = %v, %v; want the store from the local copy and why", offline, err)
	}
	if got := s2.Current(); got.Generation != committed.Generation || got.Get("TLSRPT.OrganizationName") != "Committed" {
		t.Errorf("opened from the copy: %+v, want generation %d", got, committed.Generation)
	}
	if err := s2.Set(ctx, "TLSRPT.OrganizationName", "Down"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Set with the database down: %v, want ErrUnavailable", err)
	}
	if _, err := s2.Commit(ctx, "down", "test"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Commit with the database down: %v, want ErrUnavailable", err)
	}
	if _, _, err := OpenShared(ctx, PostgresStorage{PG: pg2}, nil, nil, Replica{Path: filepath.Join(t.TempDir(), "none.json")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenShared with the database down and no copy: %v, want an error naming the missing copy", err)
	}

	restore()
	if err := s.Set(ctx, "TLSRPT.OrganizationName", "After"); err != nil {
		t.Fatal(err)
	}
	after, err := s.Commit(ctx, "after", "test")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Reload(ctx); err != nil || got.Generation != after.Generation {
		t.Errorf("Reload after the database returned = %+v, %v; want generation %d", got, err, after.Generation)
	}
	if got, err := rep.Load(); err != nil || got.Generation != after.Generation {
		t.Errorf("local copy = %+v, %v; want generation %d", got, err, after.Generation)
	}
}
