package console_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/console/consoletest"
)

const viewerPW = "a viewer's long password"

// loginAs logs a new browser in as account with password.
func loginAs(t *testing.T, env *consoletest.Env, account, password string) *browser {
	t.Helper()
	b := newBrowser(t, env)
	if p := b.get("/login"); p.code != http.StatusOK {
		t.Fatalf("GET /login: %d", p.code)
	}
	if p := b.post("/login", url.Values{"account": {account}, "password": {password}, "next": {"/"}}); p.code != http.StatusSeeOther || p.location != "/" {
		t.Fatalf("login as %s: %d → %q\n%s", account, p.code, p.location, p.body)
	}
	b.get("/")
	return b
}

// selfService are the POST routes any account may use on its own session or password.
var selfService = []string{"POST /login", "POST /logout", "POST /account/password"}

func TestViewerCannotChangeAnything(t *testing.T) {
	t.Parallel()
	env, admin := loggedIn(t)
	if err := console.AddAccount(env.PasswordFile, "viewer", console.Viewer, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	// One staged change, so that commit and discard have something to act on.
	admin.post("/settings/set", url.Values{"key": {"Sender.EnableMTASTS"}, "value": {"false"}})
	stagedBefore, err := env.Settings.Diff(t.Context())
	if err != nil || len(stagedBefore) != 1 {
		t.Fatalf("staged: %v %v", stagedBefore, err)
	}
	suppBefore, _ := env.Reporter.Suppressions(t.Context())
	queueCalls, stsCalls := len(env.Queue.Calls()), len(env.STS.Calls())

	v := loginAs(t, env, "viewer", viewerPW)
	// A form with every field any action reads, so that a handler would act if it ran.
	form := url.Values{
		"action": {"delete"}, "id": {admintest.MsgQueued}, "ids": {admintest.MsgQueued}, "all": {"true"},
		"key": {"Sender.EnableMTASTS"}, "value": {"false"}, "domain": {"example.org"}, "note": {"viewer"},
		"generation": {"1"}, "discard": {"staged"}, "entry": {"tlsrpt@bounces.example"},
	}
	replacer := strings.NewReplacer("{domain}", "example.net", "{id}", admintest.MsgQueued)
	var checked int
	for _, pattern := range env.Console.Routes() {
		method, path, _ := strings.Cut(pattern, " ")
		if method == http.MethodGet || method == http.MethodHead || slices.Contains(selfService, pattern) {
			continue
		}
		if method != http.MethodPost {
			t.Errorf("route %s: the console's state changes are POSTs; check this one's role", pattern)
			continue
		}
		checked++
		f := url.Values{}
		for k, vs := range form {
			f[k] = vs
		}
		p := v.post(replacer.Replace(path), f)
		if p.code != http.StatusForbidden {
			t.Errorf("viewer %s: got %d, want 403", pattern, p.code)
		}
		mustContain(t, p, "is a viewer")
	}
	if checked < 10 {
		t.Errorf("only %d state-changing routes found in %v", checked, env.Console.Routes())
	}
	if got := env.Queue.Calls()[queueCalls:]; len(got) != 0 {
		t.Errorf("queue operations by a viewer: %v", got)
	}
	if got := env.STS.Calls()[stsCalls:]; len(got) != 0 {
		t.Errorf("policy cache operations by a viewer: %v", got)
	}
	if env.Settings.Current().Generation != 1 {
		t.Errorf("a viewer committed: generation %d", env.Settings.Current().Generation)
	}
	if staged, _ := env.Settings.Diff(t.Context()); !cmp.Equal(staged, stagedBefore) {
		t.Errorf("staged changes after the viewer: %v, want %v", staged, stagedBefore)
	}
	if supp, _ := env.Reporter.Suppressions(t.Context()); len(supp) != len(suppBefore) {
		t.Errorf("suppressions after the viewer: %v, want %v", supp, suppBefore)
	}

	// The viewer sees every page, without the forms it may not use.
	for _, path := range []string{"/", "/queue", "/queue/" + admintest.MsgQueued, "/domains", "/domains/example.net", "/reports",
		"/settings", "/rules", "/settings/review", "/settings/history", "/trace", "/account",
		"/queue/confirm?action=delete&id=" + admintest.MsgQueued, "/queue/bulk?action=retry&all=true"} {
		p := v.get(path)
		if p.code != http.StatusOK {
			t.Errorf("viewer GET %s: %d", path, p.code)
			continue
		}
		for _, action := range []string{`action="/settings/set"`, `action="/settings/unset"`, `action="/settings/commit"`,
			`action="/settings/discard"`, `action="/settings/rollback"`, `action="/queue/bulk"`, `action="/reports/suppress"`,
			`/refresh"`, `/flush"`, `name="action" value="delete"`, `action="/queue/action"`, `method="post" action="/queue/bulk"`} {
			if strings.Contains(p.body, action) {
				t.Errorf("viewer GET %s shows a form it may not use: %s", path, action)
			}
		}
	}
	mustContain(t, v.get("/account"), "Logged in as <strong>viewer</strong>, viewer")
	// The administrator still sees them.
	mustContain(t, admin.get("/settings"), `action="/settings/set"`)
	mustContain(t, admin.get("/settings/review"), `action="/settings/commit"`)
}

func TestViewerChangesOwnPassword(t *testing.T) {
	t.Parallel()
	env, admin := loggedIn(t)
	if err := console.AddAccount(env.PasswordFile, "viewer", console.Viewer, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	v := loginAs(t, env, "viewer", viewerPW)
	const newPW = "the viewer's new password"
	p := v.post("/account/password", url.Values{"current": {viewerPW}, "new": {newPW}, "confirm": {newPW}})
	mustContain(t, v.get(p.location), "Password changed")
	loginAs(t, env, "viewer", newPW)
	// The administrator's password and session are untouched.
	if p := admin.get("/settings"); p.code != http.StatusOK {
		t.Errorf("admin session after the viewer's password change: %d", p.code)
	}
	loginAs(t, env, console.BootstrapAccount, consoletest.Password)
}

func TestAccountChangesEndSessions(t *testing.T) {
	t.Parallel()
	env, admin := loggedIn(t)
	if err := console.AddAccount(env.PasswordFile, "ops", console.Administrator, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	ops := loginAs(t, env, "ops", viewerPW)
	if err := console.RemoveAccount(env.PasswordFile, "ops"); err != nil {
		t.Fatal(err)
	}
	if p := ops.get("/settings"); p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Errorf("removed account's session: %d → %q, want a redirect to /login", p.code, p.location)
	}
	if err := console.SetAccountPassword(env.PasswordFile, console.BootstrapAccount, "changed from the command line", 1000); err != nil {
		t.Fatal(err)
	}
	if p := admin.get("/settings"); p.code != http.StatusSeeOther {
		t.Errorf("session after its password changed elsewhere: %d, want a redirect to /login", p.code)
	}
	p := newBrowser(t, env)
	p.get("/login")
	if r := p.post("/login", url.Values{"account": {"nobody"}, "password": {viewerPW}}); r.code != http.StatusUnauthorized {
		t.Errorf("unknown account: %d, want 401", r.code)
	}
}

func TestCommitsAttributedToAccount(t *testing.T) {
	t.Parallel()
	env, admin := loggedIn(t)
	if err := console.AddAccount(env.PasswordFile, "carol", console.Administrator, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	carol := loginAs(t, env, "carol", viewerPW)
	admin.post("/settings/set", url.Values{"key": {"Sender.EnableMTASTS"}, "value": {"false"}})
	admin.post("/settings/commit", url.Values{"note": {"off for a test"}})
	carol.post("/settings/rollback", url.Values{"generation": {"1"}, "note": {"back on"}})
	hist, err := env.Settings.History(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range hist {
		got = append(got, g.Author)
	}
	if diff := cmp.Diff([]string{"carol", "admin", "mxgate"}, got); diff != "" {
		t.Errorf("authors, newest first (-want +got):\n%s", diff)
	}
	mustContain(t, admin.get("/settings/history"), "<td>carol</td>", "<td>admin</td>")
}

func TestAccountsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "console-password")
	if _, err := console.Accounts(path); !errors.Is(err, console.ErrNoPassword) {
		t.Errorf("missing file: %v, want ErrNoPassword", err)
	}
	if err := console.AddAccount(path, "bob", console.Viewer, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	if err := console.AddAccount(path, "root", console.Administrator, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	if err := console.AddAccount(path, "bob", console.Viewer, viewerPW, 1000); !errors.Is(err, console.ErrAccountExists) {
		t.Errorf("adding bob twice: %v", err)
	}
	for _, bad := range []string{"", "Bob", "-x", "a b", strings.Repeat("a", 65), "ann:x"} {
		if err := console.AddAccount(path, bad, console.Viewer, viewerPW, 1000); err == nil {
			t.Errorf("account name %q accepted", bad)
		}
	}
	if err := console.AddAccount(path, "eve", console.Role("root"), viewerPW, 1000); err == nil {
		t.Error("role root accepted")
	}
	if err := console.AddAccount(path, "eve", console.Viewer, "", 1000); err == nil {
		t.Error("empty password accepted")
	}
	if err := console.RemoveAccount(path, "root"); !errors.Is(err, console.ErrLastAdministrator) {
		t.Errorf("removing the last administrator: %v", err)
	}
	if err := console.RemoveAccount(path, "nobody"); !errors.Is(err, console.ErrNoAccount) {
		t.Errorf("removing nobody: %v", err)
	}
	if err := console.SetAccountPassword(path, "nobody", "x", 1000); !errors.Is(err, console.ErrNoAccount) {
		t.Errorf("passwd nobody: %v", err)
	}
	got, err := console.Accounts(path)
	want := []console.Account{{Name: "bob", Role: console.Viewer}, {Name: "root", Role: console.Administrator}}
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("accounts: %v %v, want %v", got, err, want)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode: %v %v", fi, err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), viewerPW) {
		t.Error("the file holds a password in clear")
	}
	// A file of one bare hash (written before named accounts) is the administrator "admin".
	legacy := filepath.Join(dir, "legacy")
	if err := console.WritePassword(legacy, "old password here", 1000); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(legacy)
	line := string(data[strings.Index(string(data), "pbkdf2-sha256$"):])
	if err := os.WriteFile(legacy, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := console.Accounts(legacy); err != nil || !cmp.Equal(got, []console.Account{{Name: "admin", Role: console.Administrator}}) {
		t.Errorf("legacy file: %v %v", got, err)
	}
	for _, bad := range []string{"bob viewer\n", "bob king pbkdf2-sha256$1$AAAA$AAAA\n", "bob viewer pbkdf2-sha256$1$AAAA$AAAA\nbob viewer pbkdf2-sha256$1$AAAA$AAAA\n", "# nothing\n"} {
		p := filepath.Join(dir, "bad")
		os.WriteFile(p, []byte(bad), 0o600)
		if _, err := console.Accounts(p); err == nil {
			t.Errorf("file %q accepted", bad)
		}
	}
}

func TestConcurrentAccountChangesLoseNothing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), console.PasswordFileName)
	if err := console.WritePassword(path, viewerPW, 1000); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, 2*n)
	for i := range n {
		go func() { errs <- console.AddAccount(path, fmt.Sprintf("user%d", i), console.Viewer, viewerPW, 1000) }()
		go func() {
			errs <- console.SetAccountPassword(path, console.BootstrapAccount, fmt.Sprintf("%s %d", viewerPW, i), 1000)
		}()
	}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	got, err := console.Accounts(path)
	if err != nil || len(got) != n+1 {
		t.Errorf("after %d concurrent adds: %v %v", n, got, err)
	}
}
