// Package storetest gives tests their own state stores: a fresh SQLite file, or a fresh database on the
// PostgreSQL server named by MXGATE_TEST_POSTGRES (which .ci/run starts and exports).
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/testenv"
)

// PostgresEnv is the environment variable that names the PostgreSQL server the PostgreSQL suites use, as a
// DSN of a database the user may CREATE DATABASE from (e.g. postgres://postgres@127.0.0.1:54329/postgres).
const PostgresEnv = "MXGATE_TEST_POSTGRES"

// SQLite opens a fresh SQLite state store in a temporary directory, closed when the test ends.
func SQLite(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresDSN creates a database of its own for the test on the MXGATE_TEST_POSTGRES server and returns its
// DSN; the database is dropped when the test ends. Without the variable the test is skipped, saying why
// (under CI=true it fails: CI always provides the server).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(PostgresEnv)
	if admin == "" {
		testenv.MissingDependency(t, "no PostgreSQL server: set %s to a postgres:// DSN (.ci/postgres starts one and prints it)", PostgresEnv)
		return ""
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "mxgate_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("%s=%s: %v", PostgresEnv, store.Redact(admin), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// Postgres opens a fresh PostgreSQL state store (see PostgresDSN), closed when the test ends.
func Postgres(t testing.TB) *store.PG {
	t.Helper()
	dsn := PostgresDSN(t)
	pg, err := store.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	return pg
}

// CutOff makes the test database of dsn (from PostgresDSN) unreachable, as a database server outage does
// for its clients: it refuses new connections and its open ones are terminated. It returns the function that
// lets connections in again; the test's cleanup calls it too, so that the database can be dropped.
func CutOff(t testing.TB, dsn string) (restore func()) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	ident := pgx.Identifier{db}.Sanitize()
	admin := func(q string, args ...any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, os.Getenv(PostgresEnv))
		if err != nil {
			t.Fatalf("%s: %v", PostgresEnv, err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	admin("ALTER DATABASE " + ident + " WITH ALLOW_CONNECTIONS false")
	admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", db)
	restored := false
	restore = func() {
		if !restored {
			restored = true
			admin("ALTER DATABASE " + ident + " WITH ALLOW_CONNECTIONS true")
		}
	}
	t.Cleanup(restore)
	return restore
}
