package cli

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/console"
)

// consoleUsers runs "mxgate -c CONFIG console user ARGS..." with stdin as standard input.
func consoleUsers(t *testing.T, config, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = mainIO(append([]string{"-c", config, "console", "user"}, args...), strings.NewReader(stdin), &out, &errb, osEnvironment())
	return code, out.String(), errb.String()
}

func TestConsoleUserCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mxgate.toml")
	if err := os.WriteFile(cfg, []byte("[data]\ndir = \""+dataDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dataDir, console.PasswordFileName)
	// The daemon's first start: the administrator "admin".
	if _, _, err := console.Bootstrap(pwFile); err != nil {
		t.Fatal(err)
	}
	const pw = "viewer password of some length"
	if code, out, errs := consoleUsers(t, cfg, pw+"\n", "add", "bob", "--role", "viewer"); code != 0 || !strings.Contains(out, "added bob (viewer)") {
		t.Fatalf("add bob: %d %q %q", code, out, errs)
	}
	if code, _, errs := consoleUsers(t, cfg, pw+"\n", "add", "bob", "--role", "viewer"); code == 0 || !strings.Contains(errs, "account exists") {
		t.Errorf("add bob twice: %d %q", code, errs)
	}
	if code, _, errs := consoleUsers(t, cfg, pw+"\n", "add", "eve", "--role", "root"); code == 0 || !strings.Contains(errs, `unknown role "root"`) {
		t.Errorf("role root: %d %q", code, errs)
	}
	if code, _, errs := consoleUsers(t, cfg, pw+"\n", "add", "eve"); code == 0 || !strings.Contains(errs, "role") {
		t.Errorf("no role: %d %q", code, errs)
	}
	if code, _, errs := consoleUsers(t, cfg, "short\n", "add", "eve", "--role", "viewer"); code == 0 || !strings.Contains(errs, "at least 12") {
		t.Errorf("short password: %d %q", code, errs)
	}
	if code, _, errs := consoleUsers(t, cfg, pw+"\n", "add", "Eve!", "--role", "viewer"); code == 0 || !strings.Contains(errs, "account name") {
		t.Errorf("bad name: %d %q", code, errs)
	}
	code, out, _ := consoleUsers(t, cfg, "", "--json", "list")
	var rows []struct{ Name, Role string }
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Fatalf("list --json: %d %v %q", code, err, out)
	}
	if diff := cmp.Diff([]struct{ Name, Role string }{{"admin", "administrator"}, {"bob", "viewer"}}, rows); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if code, out, _ := consoleUsers(t, cfg, "", "list"); code != 0 || !strings.Contains(out, "bob") || !strings.Contains(out, "administrator") {
		t.Errorf("list: %d %q", code, out)
	}

	var comp bytes.Buffer
	if code := mainIO([]string{"-c", cfg, "__complete", "console", "user", "passwd", "b"}, strings.NewReader(""), &comp, &comp, osEnvironment()); code != 0 ||
		!strings.HasPrefix(comp.String(), "bob\n") || strings.Contains(comp.String(), "admin") {
		t.Errorf("completion of passwd b: %d %q, want bob", code, comp.String())
	}

	const newPW = "bob's new password, longer"
	if code, out, errs := consoleUsers(t, cfg, newPW+"\n", "passwd", "bob"); code != 0 || !strings.Contains(out, "password of bob changed") {
		t.Fatalf("passwd bob: %d %q %q", code, out, errs)
	}
	if code, _, errs := consoleUsers(t, cfg, newPW+"\n", "passwd", "nobody"); code == 0 || !strings.Contains(errs, "no such account: nobody") {
		t.Errorf("passwd nobody: %d %q", code, errs)
	}
	data, _ := os.ReadFile(pwFile)
	if strings.Contains(string(data), newPW) || strings.Contains(string(data), pw) {
		t.Error("the accounts file holds a password in clear")
	}
	if a, ok, err := console.Authenticate(pwFile, "bob", newPW); !ok || err != nil || a.Role != console.Viewer {
		t.Errorf("bob's new password from standard input: %v %v %v", a, ok, err)
	}
	if code, _, errs := consoleUsers(t, cfg, "", "remove", "admin"); code == 0 || !strings.Contains(errs, "last administrator") {
		t.Errorf("remove the last administrator: %d %q, want a refusal", code, errs)
	}
	if code, _, errs := consoleUsers(t, cfg, pw+"\n", "add", "carol", "--role", "administrator"); code != 0 {
		t.Fatalf("add carol: %d %q", code, errs)
	}
	if code, out, errs := consoleUsers(t, cfg, "", "remove", "admin"); code != 0 || !strings.Contains(out, "removed admin") {
		t.Errorf("remove admin: %d %q %q", code, out, errs)
	}
	if got, err := console.Accounts(pwFile); err != nil || len(got) != 2 || got[0].Name != "bob" || got[1].Name != "carol" {
		t.Errorf("after remove: %v %v", got, err)
	}
}

// With --admin and --token the console user commands go through the daemon's admin API: the daemon's
// password file changes although the command line never names a data directory.
func TestConsoleUserCommandsThroughAPI(t *testing.T) {
	t.Parallel()
	pwFile := filepath.Join(t.TempDir(), console.PasswordFileName)
	if _, _, err := console.Bootstrap(pwFile); err != nil {
		t.Fatal(err)
	}
	q, c := admintest.Fixture()
	s, err := admin.New(admin.Options{Token: cliToken, Queue: q, STS: c, Accounts: console.PasswordFile{Path: pwFile, Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := mainIO(append([]string{"--admin", srv.URL, "--token", cliToken, "console", "user"}, args...), strings.NewReader(stdin), &out, &errb, osEnvironment())
		return code, out.String(), errb.String()
	}
	const pw = "viewer password of some length"
	if code, out, errs := run(pw+"\n", "add", "bob", "--role", "viewer"); code != 0 || !strings.Contains(out, "added bob (viewer) through the admin API at "+srv.URL) {
		t.Fatalf("add bob: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(pw+"\n", "add", "bob", "--role", "viewer"); code == 0 || !strings.Contains(errs, "account exists") {
		t.Errorf("add bob twice: %d %q", code, errs)
	}
	if code, _, errs := run("short\n", "add", "eve", "--role", "viewer"); code == 0 || !strings.Contains(errs, "at least 12") {
		t.Errorf("short password: %d %q", code, errs)
	}
	code, out, _ := run("", "--json", "list")
	var rows []struct{ Name, Role string }
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Fatalf("list --json: %d %v %q", code, err, out)
	}
	if diff := cmp.Diff([]struct{ Name, Role string }{{"admin", "administrator"}, {"bob", "viewer"}}, rows); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	before, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	const newPW = "bob's new password, longer"
	if code, out, errs := run(newPW+"\n", "passwd", "bob"); code != 0 || !strings.Contains(out, "password of bob changed") {
		t.Fatalf("passwd bob: %d %q %q", code, out, errs)
	}
	if after, err := os.ReadFile(pwFile); err != nil || bytes.Equal(before, after) {
		t.Errorf("bob's new password did not reach the daemon's file (%v)", err)
	}
	if code, _, errs := run(newPW+"\n", "passwd", "nobody"); code == 0 || !strings.Contains(errs, "no such account") {
		t.Errorf("passwd nobody: %d %q", code, errs)
	}
	if code, _, errs := run("", "remove", "admin"); code == 0 || !strings.Contains(errs, "last administrator") {
		t.Errorf("remove the last administrator: %d %q, want a refusal", code, errs)
	}
	if code, out, errs := run("", "remove", "bob"); code != 0 || !strings.Contains(out, "removed bob") {
		t.Errorf("remove bob: %d %q %q", code, out, errs)
	}
	if accts, err := console.Accounts(pwFile); err != nil || len(accts) != 1 {
		t.Errorf("accounts left in the daemon's file: %v %v, want admin only", accts, err)
	}
}
