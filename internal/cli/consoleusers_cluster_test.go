package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestConsoleUserCommandsInClusterMode: with [data] database set, the commands without --admin edit the
// accounts in the shared database (which every node logs in with), not a password file.
func TestConsoleUserCommandsInClusterMode(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mxgate.toml")
	if err := os.WriteFile(cfg, []byte("[data]\ndir = \""+dataDir+"\"\ndatabase = \""+dsn+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The first node's start: the cluster's administrator "admin".
	pg, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	shared := &console.PostgresAccounts{PG: pg}
	if seeded, err := shared.Seed(context.Background(), filepath.Join(dataDir, console.PasswordFileName)); err != nil || seeded.Password == "" {
		t.Fatalf("seed: %+v, %v", seeded, err)
	}
	const pw = "viewer password of some length"
	if code, out, errs := consoleUsers(t, cfg, pw+"\n", "add", "carol", "--role", "viewer"); code != 0 || !strings.Contains(out, "added carol (viewer) to the shared database") {
		t.Fatalf("add carol: %d %q %q", code, out, errs)
	}
	accts, err := shared.Accounts(context.Background())
	if err != nil || len(accts) != 2 || accts[1].Name != "carol" {
		t.Errorf("shared accounts after the add: %v, %v", accts, err)
	}
	if code, out, _ := consoleUsers(t, cfg, "", "list"); code != 0 || !strings.Contains(out, "carol") || !strings.Contains(out, "admin") {
		t.Errorf("list: %d %q", code, out)
	}
	if code, _, errs := consoleUsers(t, cfg, "", "remove", "admin"); code == 0 || !strings.Contains(errs, "last administrator") {
		t.Errorf("remove the last administrator: %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dataDir, console.PasswordFileName)); !os.IsNotExist(err) {
		t.Errorf("a password file was written in cluster mode: %v", err)
	}
}

// TestConsoleUserAddBeforeAnyNodeSeeds: a change made with [data] database set before any node started in
// cluster mode seeds the shared table first, as a starting node would: with the data directory's password
// file, or with the administrator whose password it shows; the account is then added beside them.
func TestConsoleUserAddBeforeAnyNodeSeeds(t *testing.T) {
	t.Parallel()
	const pw = "viewer password of some length"
	for _, withFile := range []bool{true, false} {
		dsn := storetest.PostgresDSN(t)
		dir := t.TempDir()
		dataDir := filepath.Join(dir, "data")
		if err := os.Mkdir(dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		want := []string{"admin", "bob"}
		if withFile {
			file := filepath.Join(dataDir, console.PasswordFileName)
			if err := console.WritePassword(file, "the former node's admin password", 1000); err != nil {
				t.Fatal(err)
			}
			if err := console.AddAccount(file, "watch", console.Viewer, pw, 1000); err != nil {
				t.Fatal(err)
			}
			want = []string{"admin", "watch", "bob"}
		}
		cfg := filepath.Join(dir, "mxgate.toml")
		if err := os.WriteFile(cfg, []byte("[data]\ndir = \""+dataDir+"\"\ndatabase = \""+dsn+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errs := consoleUsers(t, cfg, pw+"\n", "add", "bob", "--role", "viewer")
		if code != 0 {
			t.Fatalf("file %v: add bob: %d %q", withFile, code, errs)
		}
		if wantMsg := map[bool]string{true: "copied the 2 accounts", false: "password for the first login, account admin"}[withFile]; !strings.Contains(errs, wantMsg) {
			t.Errorf("file %v: add bob said %q, want %q", withFile, errs, wantMsg)
		}
		pg, err := store.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pg.Close)
		accts, err := (&console.PostgresAccounts{PG: pg}).Accounts(context.Background())
		var names []string
		for _, a := range accts {
			names = append(names, a.Name)
		}
		if err != nil || strings.Join(names, ",") != strings.Join(want, ",") || accts[0].Role != "administrator" {
			t.Errorf("file %v: shared accounts %v, %v; want %v with admin an administrator", withFile, accts, err, want)
		}
	}
}
