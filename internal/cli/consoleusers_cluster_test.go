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
