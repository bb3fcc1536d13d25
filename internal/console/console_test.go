package console_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/console/consoletest"
)

// browser is an HTTP client with cookies that does not follow redirects, so tests see them.
type browser struct {
	t    *testing.T
	env  *consoletest.Env
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, env *consoletest.Env) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, env: env, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	code     int
	body     string
	location string
	header   http.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	p := page{code: resp.StatusCode, body: string(body), location: resp.Header.Get("Location"), header: resp.Header}
	if m := csrfRE.FindStringSubmatch(p.body); m != nil {
		b.csrf = m[1]
	}
	return p
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.env.Server.URL+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post submits form to path; the session's CSRF token is added unless form has a "csrf" key (possibly empty
// to leave it out).
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	} else if form.Get("csrf") == "" {
		form.Del("csrf")
	}
	req, err := http.NewRequest(http.MethodPost, b.env.Server.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// login logs in with password and returns the response to the login POST.
func (b *browser) login(password string) page {
	b.t.Helper()
	lp := b.get("/login")
	if lp.code != http.StatusOK {
		b.t.Fatalf("GET /login: %d", lp.code)
	}
	return b.post("/login", url.Values{"password": {password}, "next": {"/"}})
}

func loggedIn(t *testing.T) (*consoletest.Env, *browser) {
	t.Helper()
	env := consoletest.New(t)
	b := newBrowser(t, env)
	if p := b.login(consoletest.Password); p.code != http.StatusSeeOther || p.location != "/" {
		t.Fatalf("login: got %d → %q, want 303 → /\n%s", p.code, p.location, p.body)
	}
	b.get("/") // picks up the session's CSRF token
	return env, b
}

func mustContain(t *testing.T, p page, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(p.body, w) {
			t.Errorf("page does not contain %q", w)
		}
	}
}

func TestLoginRequired(t *testing.T) {
	t.Parallel()
	env := consoletest.New(t)
	b := newBrowser(t, env)
	for _, path := range []string{"/", "/queue", "/queue/" + admintest.MsgQueued, "/queue/confirm?action=retry&id=x",
		"/domains", "/domains/example.org", "/reports", "/reports/preview?domain=example.org", "/settings", "/rules",
		"/settings/review", "/settings/history", "/account", "/no-such-page"} {
		p := b.get(path)
		if p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
			t.Errorf("GET %s without a session: %d → %q, want 303 → /login", path, p.code, p.location)
		}
	}
	if p := b.get("/queue?domain=example.org"); p.location != "/login?next="+url.QueryEscape("/queue?domain=example.org") {
		t.Errorf("redirect keeps the page: got %q", p.location)
	}
	// A POST without a session changes nothing.
	p := b.post("/queue/action", url.Values{"action": {"delete"}, "id": {admintest.MsgQueued}, "csrf": {"00"}})
	if p.code != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Errorf("POST without a session: %d → %q", p.code, p.location)
	}
	if calls := env.Queue.Calls(); len(calls) != 0 {
		t.Errorf("queue calls without a session: %v", calls)
	}
	// The login page and the stylesheet are open.
	if p := b.get("/login"); p.code != http.StatusOK {
		t.Errorf("GET /login: %d", p.code)
	}
	if p := b.get("/static/console.css"); p.code != http.StatusOK || !strings.HasPrefix(p.header.Get("Content-Type"), "text/css") {
		t.Errorf("GET /static/console.css: %d %s", p.code, p.header.Get("Content-Type"))
	}
}

func TestLoginBadPasswordRefused(t *testing.T) {
	t.Parallel()
	env := consoletest.New(t)
	b := newBrowser(t, env)
	p := b.login("not the password")
	if p.code != http.StatusUnauthorized {
		t.Fatalf("wrong password: got %d, want 401", p.code)
	}
	mustContain(t, p, "Wrong password.")
	if p := b.get("/"); p.code != http.StatusSeeOther {
		t.Errorf("after a failed login GET / = %d, want 303 to /login", p.code)
	}
	// A login form posted without the token that came with the login page is refused.
	fresh := newBrowser(t, env)
	p = fresh.post("/login", url.Values{"password": {consoletest.Password}, "csrf": {"abcdef"}})
	if p.code != http.StatusForbidden {
		t.Errorf("login without the login-page token: got %d, want 403", p.code)
	}
}

func TestLoginRateLimitedPerIP(t *testing.T) {
	t.Parallel()
	env := consoletest.New(t)
	b := newBrowser(t, env)
	for i := range console.LoginFailures {
		if p := b.login("wrong"); p.code != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d, want 401", i+1, p.code)
		}
	}
	p := b.login(consoletest.Password)
	if p.code != http.StatusTooManyRequests {
		t.Fatalf("after %d failures the right password: got %d, want 429", console.LoginFailures, p.code)
	}
	if p.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	env.Clock.Set(env.Clock.Now().Add(console.LoginWindow + time.Second))
	if p := b.login(consoletest.Password); p.code != http.StatusSeeOther {
		t.Errorf("after the window: got %d, want 303", p.code)
	}
}

func TestSessionCookieAndHeaders(t *testing.T) {
	t.Parallel()
	env := consoletest.New(t)
	b := newBrowser(t, env)
	p := b.login(consoletest.Password)
	var sc *http.Cookie
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "mxgate_console" {
			sc = c
		}
	}
	if sc == nil {
		t.Fatal("no session cookie")
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Secure || len(sc.Value) < 64 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, 256-bit id", sc)
	}
	p = b.get("/")
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	// Idle sessions end.
	env.Clock.Set(env.Clock.Now().Add(console.DefaultSessionIdle + time.Minute))
	if p := b.get("/"); p.code != http.StatusSeeOther {
		t.Errorf("idle session: GET / = %d, want 303 to /login", p.code)
	}
}

func TestSecureCookieOverTLS(t *testing.T) {
	t.Parallel()
	env := consoletest.New(t)
	b := newBrowser(t, env)
	b.get("/login")
	req, err := http.NewRequest(http.MethodPost, "https://console.test/login", strings.NewReader(url.Values{
		"password": {consoletest.Password}, "csrf": {b.csrf}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	// The handler sees the request as if it came over TLS.
	srv := env.Server.Config.Handler
	rec := httptest.NewRecorder()
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	u, _ := url.Parse(env.Server.URL)
	for _, c := range b.c.Jar.Cookies(&url.URL{Scheme: "http", Host: u.Host, Path: "/login"}) {
		req.AddCookie(c)
	}
	req.TLS = &tls.ConnectionState{HandshakeComplete: true, Version: tls.VersionTLS13}
	req.RemoteAddr = "192.0.2.1:1234"
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("login over TLS: %d", rec.Code)
	}
	found := false
	for _, c := range rec.Result().Cookies() {
		if c.Name == "mxgate_console" {
			found = true
			if !c.Secure {
				t.Error("session cookie over TLS is not Secure")
			}
		}
	}
	if !found {
		t.Error("no session cookie")
	}
}

func TestCSRFRequired(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/queue/action", url.Values{"action": {"delete"}, "id": {admintest.MsgQueued}}},
		{"/settings/set", url.Values{"key": {"Sender.EnableMTASTS"}, "value": {"false"}}},
		{"/settings/commit", url.Values{"note": {"x"}}},
		{"/settings/rollback", url.Values{"generation": {"1"}}},
		{"/domains/example.net/flush", nil},
		{"/domains/example.com/refresh", nil},
		{"/account/password", url.Values{"current": {consoletest.Password}, "new": {"a new long password"}, "confirm": {"a new long password"}}},
		{"/reports/suppress", url.Values{"entry": {"x@example.org"}}},
		{"/logout", nil},
	} {
		for name, tok := range map[string]string{"missing": "", "wrong": strings.Repeat("0", 64)} {
			form := url.Values{}
			for k, v := range tc.form {
				form[k] = v
			}
			form["csrf"] = []string{tok}
			if p := b.post(tc.path, form); p.code != http.StatusForbidden {
				t.Errorf("POST %s with %s CSRF token: got %d, want 403", tc.path, name, p.code)
			}
		}
	}
	// A cross-site Origin is refused even with the token.
	req, _ := http.NewRequest(http.MethodPost, env.Server.URL+"/settings/set",
		strings.NewReader(url.Values{"csrf": {b.csrf}, "key": {"Sender.EnableMTASTS"}, "value": {"false"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if p := b.do(req); p.code != http.StatusForbidden {
		t.Errorf("cross-origin POST: got %d, want 403", p.code)
	}
	if calls := env.Queue.Calls(); len(calls) != 0 {
		t.Errorf("queue calls: %v", calls)
	}
	if calls := env.STS.Calls(); len(calls) != 0 {
		t.Errorf("sts calls: %v", calls)
	}
	if d, err := env.Settings.Diff(t.Context()); err != nil || len(d) != 0 {
		t.Errorf("staged: %v %v", d, err)
	}
	// Still logged in: logout without the token did nothing.
	if p := b.get("/"); p.code != http.StatusOK {
		t.Errorf("GET / = %d", p.code)
	}
}

func TestPagesRender(t *testing.T) {
	t.Parallel()
	_, b := loggedIn(t)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{"Mail in (24 h)", `<svg class="chart"`, "certificate-expired", consoletest.ExpiredDomain,
			"Domains failing MTA-STS enforce", `id="queue-depth">2<`, "2h 0m"}},
		{"/queue", []string{admintest.MsgQueued, admintest.MsgHeld, consoletest.MsgExpired, "certificate-host-mismatch"}},
		{"/queue?domain=shop.example", []string{consoletest.MsgExpired, "1 message"}},
		{"/queue?error=certificate-expired", []string{consoletest.MsgExpired}},
		{"/queue?held=true", []string{admintest.MsgHeld}},
		{"/queue/" + consoletest.MsgExpired, []string{"Attempt timeline", "mx.shop.example", "mta-sts enforce",
			`<code class="rt">certificate-expired</code>`, "451 4.7.5"}},
		{"/queue/confirm?action=bounce&id=" + consoletest.MsgExpired, []string{"Bounce 1 message, affecting 1 recipient."}},
		{"/domains", []string{"example.org", "example.net", "example.com", "plain.example", consoletest.ExpiredDomain,
			"2025a", "*.mx.example.org", "expired", "would fail under enforce: 68 of 68 sessions in 24 h (last: unverified TLS 1.2)", "failing enforce since"}},
		{"/domains/example.org", []string{"Effective policy", "mta-sts enforce", "2025a", "Live MX hosts", "Policy text"}},
		{"/reports", []string{"Pending aggregates", "example.org", "tlsrpt@bounces.example", "Sent history"}},
		{"/reports/preview?domain=example.org&day=2025-06-01", []string{"certificate-host-mismatch", "total-successful-session-count", "Corp Example"}},
		{"/settings", []string{"Sender.EnableMTASTS", "Controller.EnableTLSRPT", `id="generation">1<`}},
		{"/settings/review", []string{"Nothing is staged"}},
		{"/settings/history", []string{"initial settings from the bootstrap configuration"}},
		{"/account", []string{"Change the console password"}},
	} {
		p := b.get(tc.path)
		if p.code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", tc.path, p.code, p.body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(p.body, w) {
				t.Errorf("GET %s: page does not contain %q", tc.path, w)
			}
		}
	}
	for path, code := range map[string]int{
		"/queue/nosuchmessage":                      http.StatusNotFound,
		"/queue?state=bogus":                        http.StatusBadRequest,
		"/queue/confirm?action=explode&id=x":        http.StatusBadRequest,
		"/domains/not..a..domain":                   http.StatusBadRequest,
		"/reports/preview?domain=nothing.example":   http.StatusNotFound,
		"/reports/preview?domain=a.example&day=bad": http.StatusBadRequest,
		"/no-such-page":                             http.StatusNotFound,
	} {
		if p := b.get(path); p.code != code {
			t.Errorf("GET %s: %d, want %d", path, p.code, code)
		}
	}
}

func TestQueueActionsCallThrough(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	for _, tc := range []struct {
		action, id, confirm, to string
	}{
		{"retry", admintest.MsgQueued, "Retry 1 message, affecting 1 recipient.", "/queue/" + admintest.MsgQueued},
		{"hold", admintest.MsgQueued, "Hold 1 message, affecting 1 recipient.", "/queue/" + admintest.MsgQueued},
		{"release", admintest.MsgHeld, "Release 1 message, affecting 1 recipient.", "/queue/" + admintest.MsgHeld},
		{"bounce", consoletest.MsgExpired, "Bounce 1 message, affecting 1 recipient.", "/queue/" + consoletest.MsgExpired},
		{"delete", admintest.MsgHeld, "Delete 1 message, affecting 1 recipient.", "/queue"},
	} {
		p := b.get("/queue/confirm?action=" + tc.action + "&id=" + tc.id)
		if p.code != http.StatusOK {
			t.Fatalf("confirm %s: %d", tc.action, p.code)
		}
		mustContain(t, p, tc.confirm)
		p = b.post("/queue/action", url.Values{"action": {tc.action}, "id": {tc.id}})
		if p.code != http.StatusSeeOther || p.location != tc.to {
			t.Errorf("%s: %d → %q, want 303 → %s", tc.action, p.code, p.location, tc.to)
		}
		if p := b.get(p.location); !strings.Contains(p.body, "done for 1 of 1 message") {
			t.Errorf("%s: no confirmation message on the next page", tc.action)
		}
	}
	want := []string{"retry " + admintest.MsgQueued, "hold " + admintest.MsgQueued, "release " + admintest.MsgHeld,
		"bounce " + consoletest.MsgExpired, "delete " + admintest.MsgHeld}
	if diff := cmp.Diff(want, env.Queue.Calls()); diff != "" {
		t.Errorf("queue calls (-want +got):\n%s", diff)
	}
	// Bulk: the confirmation counts messages and recipients.
	p := b.get("/queue/confirm?action=retry&id=" + admintest.MsgQueued + "&id=" + consoletest.MsgExpired + "&id=gone")
	mustContain(t, p, "Not in the queue any more: gone")
	p = b.post("/queue/action", url.Values{"action": {"hold"}, "id": {admintest.MsgQueued, consoletest.MsgExpired}})
	if p.code != http.StatusSeeOther || p.location != "/queue" {
		t.Errorf("bulk hold: %d → %q", p.code, p.location)
	}
	if calls := env.Queue.Calls(); len(calls) != 7 {
		t.Errorf("after bulk hold: %v", calls)
	}
}

func TestDomainRefreshAndFlush(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	p := b.post("/domains/example.com/refresh", url.Values{"next": {"/domains/example.com"}})
	if p.code != http.StatusSeeOther || p.location != "/domains/example.com" {
		t.Fatalf("refresh: %d → %q", p.code, p.location)
	}
	mustContain(t, b.get(p.location), "Refreshed the MTA-STS policy of example.com: id 20250601T000000, mode enforce")
	p = b.post("/domains/example.net/flush", nil)
	if p.code != http.StatusSeeOther || p.location != "/domains" {
		t.Fatalf("flush: %d → %q", p.code, p.location)
	}
	mustContain(t, b.get("/domains"), "Flushed the cached MTA-STS policy of example.net")
	if diff := cmp.Diff([]string{"refresh example.com", "flush example.net"}, env.STS.Calls()); diff != "" {
		t.Errorf("sts calls (-want +got):\n%s", diff)
	}
	// An open redirect through "next" is not possible.
	p = b.post("/domains/example.com/refresh", url.Values{"next": {"//evil.example/"}})
	if p.location != "/domains" {
		t.Errorf("next=//evil.example/: redirected to %q", p.location)
	}
	if !slices.Contains(env.Explained(), "example.com") {
		t.Errorf("the domain page did not ask Explain: %v", env.Explained())
	}
}

// TestOverrideRuleStagedAndShown: an override rule is staged from the settings form, the form then shows it
// (not a weaker preselected level), and the domain page says the rule overrides the published policy.
func TestOverrideRuleStagedAndShown(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	b.post("/settings/set", url.Values{"domain": {"partner.example"}, "value": {"opportunistic override"}})
	p := b.post("/settings/commit", url.Values{"note": {"partner's policy host is broken"}})
	if p.code != http.StatusSeeOther {
		t.Fatalf("commit: %d", p.code)
	}
	if got := env.Settings.Current().Values["Domain.partner.example.TLS"]; got != "opportunistic override" {
		t.Fatalf("committed rule = %q", got)
	}
	mustContain(t, b.get("/rules"), "<option selected>opportunistic override</option>")
	mustContain(t, b.get("/domains/partner.example"), `id="override"`, "opportunistic override", "domain rule opportunistic override")
	mustContain(t, b.get(b.post("/settings/set", url.Values{"domain": {"partner.example"}, "value": {"lax"}}).location),
		"Not staged: Domain.partner.example.TLS: invalid value: unknown TLS level")
}

func TestSettingsStageCommitRollback(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	ctx := t.Context()
	p := b.post("/settings/set", url.Values{"key": {"Sender.EnableMTASTS"}, "value": {"false"}})
	if p.code != http.StatusSeeOther || p.location != "/settings" {
		t.Fatalf("stage: %d → %q", p.code, p.location)
	}
	p = b.get("/settings")
	mustContain(t, p, "Staged Sender.EnableMTASTS = false", `id="staged-banner"`, "1 staged settings change not yet in force")
	p = b.post("/settings/set", url.Values{"key": {"Sender.EnableMTASTS"}, "value": {"perhaps"}})
	mustContain(t, b.get(p.location), "Not staged: Sender.EnableMTASTS: invalid value")
	b.post("/settings/set", url.Values{"domain": {"bank.example"}, "value": {"required-verify"}})

	p = b.get("/settings/review")
	mustContain(t, p, "<code>Sender.EnableMTASTS</code>", "<del><code>true</code></del>", "<ins><code>false</code></ins>",
		"Domain.bank.example.TLS", "Commit generation 2")

	p = b.post("/settings/commit", url.Values{"note": {"  "}})
	mustContain(t, b.get(p.location), "Not committed: write a note")
	if env.Settings.Current().Generation != 1 {
		t.Fatal("committed without a note")
	}
	p = b.post("/settings/commit", url.Values{"note": {"MTA-STS off while shop.example renews its certificate"}})
	if p.code != http.StatusSeeOther || p.location != "/settings/history" {
		t.Fatalf("commit: %d → %q", p.code, p.location)
	}
	snap := env.Settings.Current()
	if snap.Generation != 2 || snap.Bool("Sender.EnableMTASTS") || snap.Values["Domain.bank.example.TLS"] != "required-verify" {
		t.Fatalf("after commit: %+v", snap)
	}
	p = b.get("/settings/history")
	mustContain(t, p, "MTA-STS off while shop.example renews its certificate", "<code>Sender.EnableMTASTS</code>: true → false",
		"Roll back to 1")
	if strings.Contains(p.body, `id="staged-banner"`) {
		t.Error("banner still shown after commit")
	}

	p = b.post("/settings/rollback", url.Values{"generation": {"1"}})
	if p.code != http.StatusSeeOther {
		t.Fatalf("rollback: %d", p.code)
	}
	mustContain(t, b.get(p.location), "Rolled back to generation 1 as generation 3")
	if snap := env.Settings.Current(); snap.Generation != 3 || !snap.Bool("Sender.EnableMTASTS") {
		t.Errorf("after rollback: %+v", snap)
	}

	// Unset and discard.
	b.post("/settings/unset", url.Values{"key": {"Sender.EnableMTASTS"}})
	if d, _ := env.Settings.Diff(ctx); len(d) != 1 || d[0].NewSet {
		t.Errorf("unset staged: %+v", d)
	}
	b.post("/settings/discard", nil)
	if d, _ := env.Settings.Diff(ctx); len(d) != 0 {
		t.Errorf("after discard: %+v", d)
	}
}

func TestReportSuppressions(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	b.post("/reports/suppress", url.Values{"entry": {"rua@noisy.example"}, "note": {"loops"}})
	b.post("/reports/unsuppress", url.Values{"entry": {"tlsrpt@bounces.example"}})
	list, err := env.Reporter.Suppressions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, s.Entry)
	}
	if diff := cmp.Diff([]string{"rua@noisy.example"}, got); diff != "" {
		t.Errorf("suppressions (-want +got):\n%s", diff)
	}
}

func TestPasswordChange(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	other := newBrowser(t, env)
	other.login(consoletest.Password)
	const newPW = "a much longer new password"
	p := b.post("/account/password", url.Values{"current": {"wrong"}, "new": {newPW}, "confirm": {newPW}})
	mustContain(t, b.get(p.location), "the current password is wrong")
	p = b.post("/account/password", url.Values{"current": {consoletest.Password}, "new": {"short"}, "confirm": {"short"}})
	mustContain(t, b.get(p.location), "at least 12 characters")
	p = b.post("/account/password", url.Values{"current": {consoletest.Password}, "new": {newPW}, "confirm": {newPW + "x"}})
	mustContain(t, b.get(p.location), "differ")
	p = b.post("/account/password", url.Values{"current": {consoletest.Password}, "new": {newPW}, "confirm": {newPW}})
	mustContain(t, b.get(p.location), "Password changed.")
	if p := other.get("/"); p.code != http.StatusSeeOther {
		t.Errorf("other session after a password change: %d, want 303 to /login", p.code)
	}
	if p := b.get("/"); p.code != http.StatusOK {
		t.Errorf("own session after a password change: %d", p.code)
	}
	third := newBrowser(t, env)
	if p := third.login(consoletest.Password); p.code != http.StatusUnauthorized {
		t.Errorf("old password: %d, want 401", p.code)
	}
	if p := third.login(newPW); p.code != http.StatusSeeOther {
		t.Errorf("new password: %d, want 303", p.code)
	}
	// Logout ends the session.
	p = b.post("/logout", nil)
	if p.code != http.StatusSeeOther || p.location != "/login" {
		t.Errorf("logout: %d → %q", p.code, p.location)
	}
	if p := b.get("/"); p.code != http.StatusSeeOther {
		t.Errorf("after logout: %d", p.code)
	}
}

// What a component refuses is refused by the console with the component's reason: at staging (a bad
// value) and at commit (a generation only the staged changes together make invalid); nothing is committed.
func TestSettingsRefusedByComponent(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	env.Settings.AddCheck(admintest.TLSRPTCheck)
	p := b.post("/settings/set", url.Values{"key": {"TLSRPT.ContactInfo"}, "value": {"notanemail"}})
	mustContain(t, b.get(p.location), "Not staged: TLSRPT.ContactInfo: invalid value: tlsrpt refuses it: &#34;notanemail&#34; has no domain")
	b.post("/settings/set", url.Values{"key": {"TLSRPT.DKIMKeyFile"}, "value": {"/etc/mxgate/dkim.pem"}})
	p = b.post("/settings/commit", url.Values{"note": {"sign reports"}})
	mustContain(t, b.get(p.location), "Not committed: refused by tlsrpt: TLSRPT.DKIMSelector: required with TLSRPT.DKIMKeyFile")
	if g := env.Settings.Current().Generation; g != 1 {
		t.Errorf("generation %d after a refused commit, want 1", g)
	}
}
