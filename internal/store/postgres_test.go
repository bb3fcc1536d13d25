package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestMigratePostgresOncePerVersion: nodes starting together on one database apply each migration once (a
// second CREATE TABLE would fail), a later start applies only the new one, and a database newer than this
// mxgate is refused, naming the versions.
func TestMigratePostgresOncePerVersion(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	open := func() *store.PG {
		pg, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pg.Close)
		return pg
	}
	v1 := []string{`CREATE TABLE t (a INTEGER)`}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		pg := open()
		wg.Go(func() { errs[i] = store.MigratePostgres(ctx, pg, "comp", v1) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	pg := open()
	v2 := append(v1, `ALTER TABLE t ADD COLUMN b TEXT`)
	if err := store.MigratePostgres(ctx, pg, "comp", v2); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(ctx, `INSERT INTO t(a, b) VALUES (1, 'x')`); err != nil {
		t.Fatal(err)
	}
	err := store.MigratePostgres(ctx, pg, "comp", v1)
	if err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("older mxgate on a newer database: %v, want an error naming version 2", err)
	}
}

func TestOpenPostgresRefusesOtherURLs(t *testing.T) {
	for _, dsn := range []string{"mysql://x@localhost/db", "/var/lib/mxgate/state.db", "host=localhost"} {
		if _, err := store.OpenPostgres(context.Background(), dsn); err == nil || !strings.Contains(err.Error(), "postgres://") {
			t.Errorf("OpenPostgres(%q) = %v, want an error asking for a postgres:// URL", dsn, err)
		}
	}
	if got := store.Redact("postgres://mx:secret@db.example:5432/mxgate"); strings.Contains(got, "secret") {
		t.Errorf("Redact kept the password: %s", got)
	}
}
