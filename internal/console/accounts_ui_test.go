package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/console"
)

const bobPW = "bob's long console password"

// An administrator adds, resets and removes accounts on the Account page; the last administrator stays; a
// viewer sees no account list and is refused.
func TestAdministratorManagesAccounts(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	mustContain(t, b.get("/account"), `id="accounts"`, `data-account="admin"`, `id="add-account"`)

	flash := func(p page) string {
		t.Helper()
		if p.code != http.StatusSeeOther || p.location != "/account" {
			t.Fatalf("POST: %d → %q, want 303 → /account\n%s", p.code, p.location, p.body)
		}
		return b.get("/account").body
	}
	if got := flash(b.post("/accounts/add", url.Values{"name": {"bob"}, "role": {"viewer"}, "password": {"short"}})); !strings.Contains(got, "Not added") || !strings.Contains(got, "at least 12") {
		t.Errorf("short password not refused:\n%s", got)
	}
	if got := flash(b.post("/accounts/add", url.Values{"name": {"Bob!"}, "role": {"viewer"}, "password": {bobPW}})); !strings.Contains(got, "Not added") {
		t.Errorf("bad name not refused:\n%s", got)
	}
	if got := flash(b.post("/accounts/add", url.Values{"name": {"bob"}, "role": {"viewer"}, "password": {bobPW}})); !strings.Contains(got, "Account bob (viewer) added.") || !strings.Contains(got, `data-account="bob"`) {
		t.Errorf("bob not added:\n%s", got)
	}
	if got := flash(b.post("/accounts/add", url.Values{"name": {"bob"}, "role": {"viewer"}, "password": {bobPW}})); !strings.Contains(got, "account exists") {
		t.Errorf("bob added twice:\n%s", got)
	}

	bob := loginAs(t, env, "bob", bobPW)
	if p := bob.get("/account"); strings.Contains(p.body, `id="accounts"`) || strings.Contains(p.body, `id="add-account"`) {
		t.Errorf("a viewer sees the account management")
	}
	if p := bob.post("/accounts/add", url.Values{"name": {"eve"}, "role": {"administrator"}, "password": {bobPW}}); p.code != http.StatusForbidden {
		t.Errorf("viewer adding an account: %d, want 403", p.code)
	}
	if p := bob.post("/accounts/remove", url.Values{"name": {"admin"}}); p.code != http.StatusForbidden {
		t.Errorf("viewer removing an account: %d, want 403", p.code)
	}

	const newPW = "bob's reset password, long"
	if got := flash(b.post("/accounts/password", url.Values{"name": {"bob"}, "password": {newPW}})); !strings.Contains(got, "New password of bob set") {
		t.Errorf("reset not confirmed:\n%s", got)
	}
	if p := bob.get("/"); p.code != http.StatusSeeOther {
		t.Errorf("bob's session after the reset: %d, want 303 to the login", p.code)
	}
	loginAs(t, env, "bob", newPW)

	if got := flash(b.post("/accounts/remove", url.Values{"name": {"admin"}})); !strings.Contains(got, "Not removed") || !strings.Contains(got, "last administrator") {
		t.Errorf("last administrator removed:\n%s", got)
	}
	if got := flash(b.post("/accounts/remove", url.Values{"name": {"bob"}})); !strings.Contains(got, "Account bob removed") || strings.Contains(got, `data-account="bob"`) {
		t.Errorf("bob not removed:\n%s", got)
	}
	accts, err := console.Accounts(env.PasswordFile)
	if err != nil || len(accts) != 1 || accts[0].Name != "admin" {
		t.Errorf("accounts left: %v %v, want admin only", accts, err)
	}
}

// api sends a JSON request to the admin API of env with b's cookies; csrf, when set, goes in the header.
func api(t *testing.T, b *browser, method, path, csrf string, in any) (int, string) {
	t.Helper()
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, b.env.Server.URL+path, &body)
	if err != nil {
		t.Fatal(err)
	}
	if csrf != "" {
		req.Header.Set(console.CSRFHeader, csrf)
	}
	p := b.do(req)
	return p.code, p.body
}

// The admin API accepts a console session as well as the token: an administrator's session may manage
// accounts and commit, and its commits carry the account's name whatever "author" says; a viewer's may
// only read; a session request that changes state needs the CSRF token. The token's commits keep the
// author they name.
func TestAPIWithConsoleSession(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	if code, body := api(t, b, "GET", "/api/v1/accounts", "", nil); code != http.StatusOK || !strings.Contains(body, `"administrator"`) {
		t.Fatalf("GET accounts with an administrator's session: %d %s", code, body)
	}
	bobAcct := admin.NewAccount{Name: "bob", Role: "viewer", Password: bobPW}
	if code, body := api(t, b, "POST", "/api/v1/accounts", "", bobAcct); code != http.StatusUnauthorized {
		t.Errorf("POST without the CSRF header: %d %s, want 401", code, body)
	}
	if code, body := api(t, b, "POST", "/api/v1/accounts", b.csrf, bobAcct); code != http.StatusCreated {
		t.Fatalf("POST with the CSRF header: %d %s", code, body)
	}
	if code, body := api(t, b, "DELETE", "/api/v1/accounts/admin", b.csrf, nil); code != http.StatusConflict || !strings.Contains(body, "last administrator") {
		t.Errorf("DELETE the last administrator: %d %s, want 409", code, body)
	}

	value := "false"
	if code, body := api(t, b, "PUT", "/api/v1/settings/Sender.EnableMTASTS", b.csrf, admin.SetRequest{Value: &value}); code != http.StatusOK {
		t.Fatalf("stage: %d %s", code, body)
	}
	if code, body := api(t, b, "POST", "/api/v1/config/commit", b.csrf, admin.CommitRequest{Note: "off for a test", Author: "someone else"}); code != http.StatusOK {
		t.Fatalf("commit: %d %s", code, body)
	}

	bob := loginAs(t, env, "bob", bobPW)
	if code, _ := api(t, bob, "GET", "/api/v1/queue", "", nil); code != http.StatusOK {
		t.Errorf("viewer reading the queue: %d, want 200", code)
	}
	if code, _ := api(t, bob, "GET", "/api/v1/accounts", "", nil); code != http.StatusForbidden {
		t.Errorf("viewer listing accounts: %d, want 403", code)
	}
	if code, _ := api(t, bob, "POST", "/api/v1/config/discard", bob.csrf, nil); code != http.StatusForbidden {
		t.Errorf("viewer discarding: %d, want 403", code)
	}

	// The token: its commit is attributed to the author it names.
	c := &admin.Client{BaseURL: env.Server.URL, Token: env.Token}
	ctx := context.Background()
	value = "true"
	if err := c.Do(ctx, "PUT", "/api/v1/settings/Sender.EnableMTASTS", admin.SetRequest{Value: &value}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "POST", "/api/v1/config/commit", admin.CommitRequest{Note: "back on", Author: "ops-bot"}, nil); err != nil {
		t.Fatal(err)
	}
	hist, err := env.Settings.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	authors := map[string]string{}
	for _, g := range hist {
		authors[g.Note] = g.Author
	}
	if authors["off for a test"] != "admin" || authors["back on"] != "ops-bot" {
		t.Errorf("commit authors = %v, want the session's account (admin) and the token's named author (ops-bot)", authors)
	}
	accts, err := c.Accounts(ctx)
	if err != nil || len(accts) != 2 {
		t.Errorf("accounts through the token: %v %v", accts, err)
	}
}
