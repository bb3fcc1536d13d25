package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestClusterConsoleAccountsShared: node 1 ran on its own before (a password file with two accounts) and
// joins the cluster first: its accounts are copied into the shared database, once. Node 2, new, shows no
// first-login password: the accounts are the cluster's. An account added through node 2's admin API is
// listed by node 1, and the last administrator cannot be removed through either.
func TestClusterConsoleAccountsShared(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := newSimNet(t)
	dir1 := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir1, 0o700); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir1, console.PasswordFileName)
	if err := console.WritePassword(pwFile, "the first node's admin password", 1000); err != nil {
		t.Fatal(err)
	}
	if err := console.AddAccount(pwFile, "watch", console.Viewer, "the first node's viewer", 1000); err != nil {
		t.Fatal(err)
	}
	shared := func(node string) func(*config.Config) {
		return func(c *config.Config) { c.Data.Database = dsn; c.Node = node }
	}
	node1 := startGatewayWith(t, n, n.GatewayConfig(dir1), n.RootPool(), shared("node1.example.net"))
	node2 := startGateway(t, n, shared("node2.example.net"))
	if p := node2.printed.String(); p != "" {
		t.Errorf("node 2 printed %q; the cluster's accounts exist, so no first-login password", p)
	}
	ctx := t.Context()
	if err := node2.client(t).AddAccount(ctx, admin.NewAccount{Name: "carol", Role: "administrator", Password: "carol's long password"}); err != nil {
		t.Fatal(err)
	}
	accts, err := node1.client(t).Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range accts {
		names = append(names, a.Name+"/"+a.Role)
	}
	if got, want := strings.Join(names, " "), "admin/administrator watch/viewer carol/administrator"; got != want {
		t.Errorf("node 1 lists %q, want %q", got, want)
	}
	if err := node1.client(t).RemoveAccount(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	if err := node2.client(t).RemoveAccount(ctx, "carol"); err == nil || !strings.Contains(err.Error(), "last administrator") {
		t.Errorf("removing the last administrator through node 2: %v", err)
	}
	// The file of node 1 is left as it was: no longer read.
	if accts, err := console.Accounts(pwFile); err != nil || len(accts) != 2 {
		t.Errorf("node 1's password file: %v, %v", accts, err)
	}
}
