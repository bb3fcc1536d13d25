package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrateAppliesOnlyNewVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	v1 := []string{`CREATE TABLE t (a INTEGER)`}
	if err := Migrate(ctx, db, "comp", v1); err != nil {
		t.Fatal(err)
	}
	// Running the same migrations again is a no-op (a second CREATE TABLE would fail).
	if err := Migrate(ctx, db, "comp", v1); err != nil {
		t.Fatalf("re-running migrations: %v", err)
	}
	if _, err := db.Exec(`INSERT INTO t(a) VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v2 := append(v1, `ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x'`)
	if err := Migrate(ctx, db, "comp", v2); err != nil {
		t.Fatal(err)
	}
	var a int
	var b string
	if err := db.QueryRow(`SELECT a, b FROM t`).Scan(&a, &b); err != nil || a != 1 || b != "x" {
		t.Fatalf("after migration 2: a=%d b=%q err=%v", a, b, err)
	}
	// A database newer than the code is refused rather than silently used.
	if err := Migrate(ctx, db, "comp", v1); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("older code on a newer database = %v, want an error naming the version", err)
	}
	// A failing migration leaves the version where it was.
	if err := Migrate(ctx, db, "comp", append(v2, `THIS IS NOT SQL`)); err == nil {
		t.Fatal("a bad migration succeeded")
	}
	var v int
	if err := db.QueryRow(`SELECT version FROM schema_versions WHERE component = 'comp'`).Scan(&v); err != nil || v != 2 {
		t.Errorf("version after a failed migration = %d (%v), want 2", v, err)
	}
}
