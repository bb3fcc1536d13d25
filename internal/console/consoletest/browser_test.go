package consoletest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/console/consoletest"
	"github.com/mxgate/mxgate/internal/testenv"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// pageErrors collects what the pages logged as errors: uncaught exceptions, console.error calls, and
// browser log entries at error level (failed loads, Content-Security-Policy violations).
type pageErrors struct {
	mu   sync.Mutex
	errs []string
	// seen receives a token after each error (dropped when one is pending).
	seen chan struct{}
}

func (p *pageErrors) add(s string) {
	p.mu.Lock()
	p.errs = append(p.errs, s)
	p.mu.Unlock()
	select {
	case p.seen <- struct{}{}:
	default:
	}
}

func (p *pageErrors) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.errs
	p.errs = nil
	return out
}

// TestConsoleInChromium drives the real console in headless Chromium: log in, find the message deferred by
// an MTA-STS enforce failure (certificate-expired) and open it, stage Sender.EnableMTASTS=false, review,
// commit with a note, see the new generation in the history and in the domain's effective policy; visit
// every page; bounce every certificate-expired message through the bulk review and confirmation; save a PNG
// of each page, and fail on any console error.
func TestConsoleInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.MissingDependency(t, "console browser test: %s not found (install Debian's chromium): %v", chromiumPath, err)
	}
	env := consoletest.New(t)
	shots := t.TempDir()
	if dir := os.Getenv("MXGATE_CONSOLE_SCREENSHOTS"); dir != "" {
		// Keep the screenshots after the test, for people to look at.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		shots = dir
	}

	// The whole walk (some fifty pages and forms) is bounded; the bound leaves room for a loaded CI machine.
	ctx, cancel := context.WithTimeout(t.Context(), 240*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	errs := pageErrors{seen: make(chan struct{}, 1)}
	if err := chromedp.Listen(bctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			errs.add("exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				errs.add("console." + string(ev.Type) + ": " + strings.Join(args, " "))
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				errs.add(fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}

	base := env.Server.URL
	var current string
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			loc, _ := chromedp.Run(bctx, chromedp.Location())
			t.Fatalf("%s (at %s): %v", what, loc, err)
		}
	}
	// submit clicks sel and waits for the page it leads to.
	submit := func(what, sel string) {
		t.Helper()
		resp, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.Status >= 400 {
			t.Fatalf("%s: HTTP %d", what, resp.Status)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shotN := 0
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot of %s: %v", name, err)
		}
		shotN++
		path := filepath.Join(shots, fmt.Sprintf("%02d-%s.png", shotN, name))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	checkErrors := func(where string) {
		t.Helper()
		for _, e := range errs.take() {
			t.Errorf("%s: page logged an error: %s", where, e)
		}
	}
	visit := func(name, path, waitFor string) {
		t.Helper()
		current = path
		step("open "+path, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS(waitFor)))
		screenshot(name)
		checkErrors(current)
	}

	// The listener sees errors: a probe page that logs one must be caught, or this test proves nothing.
	step("probe", chromedp.Navigate(`data:text/html,<p id="probe">probe</p><script>console.error("probe")</script>`),
		chromedp.WaitVisible(chromedp.ID("probe")))
	select {
	case <-errs.seen:
		errs.take()
	case <-time.After(10 * time.Second):
		t.Fatal("the console error listener did not see the probe's console.error")
	}

	// Every page needs a login: the dashboard sends us to the login page.
	visit("login", "/", "#password")
	step("log in", chromedp.SendKeys(chromedp.ID("password"), consoletest.Password))
	submit("log in", "#login")
	step("dashboard after login", chromedp.WaitVisible(chromedp.ID("mail-in")))
	if got := text("#failing"); !strings.Contains(got, consoletest.ExpiredDomain) || !strings.Contains(got, "certificate-expired") {
		t.Errorf("dashboard: failing-enforce table = %q, want %s with certificate-expired", got, consoletest.ExpiredDomain)
	}
	// No component stops silently: the failed report sender is on the dashboard with its reason.
	if got := text(`#components tr.error`); !strings.Contains(got, "tlsrpt") || !strings.Contains(got, "failed") || !strings.Contains(got, "TLSRPT.DKIMKeyFile") {
		t.Errorf("dashboard: failed component row = %q, want tlsrpt failed with its reason", got)
	}
	checkErrors("login")
	// The TLS mix chart counts the attempts that never reached a session (the expired certificate under
	// enforce was refused before any mail was sent) beside the TLS classes.
	if got, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("chart-desc").textContent`)); err != nil ||
		!strings.Contains(got, "that never reached a session") || strings.Contains(got, " 0 that never reached") {
		t.Errorf("chart description = %q, want a non-zero count of attempts that never reached a session", got)
	}
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart rect.nosession").length`)); err != nil || n == 0 {
		t.Errorf("no-session bars: %v, %v", n, err)
	}

	// The queue: find the message deferred with result type certificate-expired and open it.
	visit("queue", "/queue", "#queue-table")
	row := chromedp.Search(`//table[@id="queue-table"]//tr[td[contains(., "certificate-expired")]]//a`)
	id, err := chromedp.Run(bctx, chromedp.Text(row))
	if err != nil {
		t.Fatalf("no queued message deferred with certificate-expired: %v", err)
	}
	if id != consoletest.MsgExpired {
		t.Errorf("message deferred with certificate-expired: got %q, want %q", id, consoletest.MsgExpired)
	}
	if _, err := chromedp.RunResponse(bctx, chromedp.Click(row)); err != nil {
		t.Fatalf("open message: %v", err)
	}
	step("message detail", chromedp.WaitVisible(chromedp.ID("timeline")))
	if got := text("#timeline tbody tr:last-child"); !strings.Contains(got, "certificate-expired") || !strings.Contains(got, "mta-sts enforce") || !strings.Contains(got, "mx.shop.example") {
		t.Errorf("timeline's last attempt = %q, want certificate-expired under mta-sts enforce at mx.shop.example", got)
	}
	screenshot("message")
	checkErrors("message")

	// Tracking: a delivered message is found by its recipient, with both attempts.
	visit("trace", "/trace", "#trace-form")
	step("search", chromedp.SendKeys(chromedp.ID("trace-q"), consoletest.TracedAddr))
	submit("find", `#trace-form button[type="submit"]`)
	step("traced message", chromedp.WaitVisible(chromedp.ID("traced-"+consoletest.MsgTraced)))
	if got := text("#traced-" + consoletest.MsgTraced + " .trace-recipients tbody"); !strings.Contains(got, "delivered") || !strings.Contains(got, "verified TLS 1.3") {
		t.Errorf("traced recipient = %q, want delivered over verified TLS 1.3", got)
	}
	if got := text("#traced-" + consoletest.MsgTraced + " .trace-timeline tbody"); !strings.Contains(got, "certificate-expired") || !strings.Contains(got, "250 2.0.0") {
		t.Errorf("traced timeline = %q, want the certificate-expired deferral, then the delivery", got)
	}
	screenshot("trace")
	checkErrors("trace")
	visit("trace-none", "/trace?q=nobody%40example.org", "#trace-none")

	// Settings: stage Sender.EnableMTASTS=false, review the diff, commit with a note.
	visit("settings", "/settings", "#settings-table")
	form := `form:has(input[name="key"][value="Sender.EnableMTASTS"])`
	step("choose false", chromedp.SetValue(chromedp.CSS(form+` select[name="value"]`), "false"))
	submit("stage", form+` button[type="submit"]`)
	step("staged banner", chromedp.WaitVisible(chromedp.ID("staged-banner")))
	submit("review", "#review-link")
	step("review page", chromedp.WaitVisible(chromedp.ID("diff")))
	if got := text("#diff"); !strings.Contains(got, "Sender.EnableMTASTS") || !strings.Contains(got, "true") || !strings.Contains(got, "false") {
		t.Errorf("diff = %q, want Sender.EnableMTASTS true → false", got)
	}
	screenshot("review")
	checkErrors("review")
	const note = "MTA-STS off while shop.example renews its certificate"
	step("note", chromedp.SendKeys(chromedp.ID("note"), note))
	submit("commit", "#commit")
	step("history", chromedp.WaitVisible(chromedp.ID("history")))
	if got := text("#history tbody tr:first-child"); !strings.Contains(got, "2") || !strings.Contains(got, note) || !strings.Contains(got, "in force") {
		t.Errorf("history's newest generation = %q, want generation 2 in force with the note", got)
	}
	if got := text("#flash"); !strings.Contains(got, "Committed generation 2") {
		t.Errorf("flash after commit = %q", got)
	}
	screenshot("history")
	checkErrors("history")
	if snap := env.Settings.Current(); snap.Generation != 2 || snap.Bool("Sender.EnableMTASTS") {
		t.Errorf("committed settings: generation %d, Sender.EnableMTASTS=%v; want 2, false", snap.Generation, snap.Bool("Sender.EnableMTASTS"))
	}
	// The new generation is what the TLS decision now uses: the domain's effective policy no longer comes
	// from MTA-STS.
	visit("domain", "/domains/"+consoletest.ExpiredDomain, "#explain")
	if got := text("#plan"); got != "opportunistic" {
		t.Errorf("effective policy of %s after the commit = %q, want opportunistic", consoletest.ExpiredDomain, got)
	}

	// A staged rule is what the form shows: staging "required" for a domain and coming back to the page
	// shows "required" preselected on its row, so that pressing Stage there does not stage "none".
	// Domain TLS rules have their own page, apart from the global settings.
	visit("settings-no-rules", "/settings", "#rules-link")
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#settings-table input[name=key][value^='Domain.']").length`)); err != nil || n != 0 {
		t.Errorf("the settings page lists %d domain rules (%v), want none", n, err)
	}
	visit("settings-rule", "/rules", "#domain-rule")
	step("rule domain", chromedp.SendKeys(chromedp.CSS(`#domain-rule input[name="domain"]`), "bank.example"))
	step("rule level", chromedp.SetValue(chromedp.CSS(`#domain-rule select[name="value"]`), "required"))
	submit("stage the rule", `#domain-rule button[type="submit"]`)
	step("staged rule banner", chromedp.WaitVisible(chromedp.ID("staged-banner")))
	ruleForm := `form:has(input[name="key"][value="Domain.bank.example.TLS"])`
	shown, err := chromedp.Run(bctx, chromedp.Value(chromedp.CSS(ruleForm+` select[name="value"]`)))
	if err != nil || shown != "required" {
		t.Errorf("the row of the staged rule preselects %q (%v), want required", shown, err)
	}
	screenshot("settings-staged-rule")
	// Lowering it asks first; Cancel keeps what was staged.
	step("choose none", chromedp.SetValue(chromedp.CSS(ruleForm+` select[name="value"]`), "none"))
	submit("stage none", ruleForm+` button[type="submit"]`)
	step("lowering warning", chromedp.WaitVisible(chromedp.ID("lower-warning")))
	if got := text("#lower-warning"); !strings.Contains(got, "bank.example") || !strings.Contains(got, "required") || !strings.Contains(got, "none") {
		t.Errorf("lowering warning = %q, want bank.example from required to none", got)
	}
	screenshot("confirm-lower")
	checkErrors("confirm-lower")
	submit("cancel lowering", "#cancel-lower")
	step("back on the rules page", chromedp.WaitVisible(chromedp.ID("rules-table")))
	staged := func() string {
		t.Helper()
		changes, err := env.Settings.Diff(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			if c.Key == "Domain.bank.example.TLS" {
				return c.New
			}
		}
		return ""
	}
	if got := staged(); got != "required" {
		t.Errorf("after Cancel the staged rule is %q, want required", got)
	}
	step("choose none again", chromedp.SetValue(chromedp.CSS(ruleForm+` select[name="value"]`), "none"))
	submit("stage none again", ruleForm+` button[type="submit"]`)
	step("lowering warning again", chromedp.WaitVisible(chromedp.ID("confirm-lower")))
	submit("confirm lowering", "#confirm-lower")
	step("staged after confirming", chromedp.WaitVisible(chromedp.ID("staged-banner")))
	if got := staged(); got != "none" {
		t.Errorf("after confirming the staged rule is %q, want none", got)
	}
	if err := env.Settings.Discard(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Rollback never drops staged work silently: with a change staged, the history says so and a rollback
	// without ticking "discard" is refused; ticked, it rolls back and says what it discarded. Generation 1's
	// settings are then in force, and its row offers no rollback that would change nothing.
	if err := env.Settings.Set(context.Background(), "TLSRPT.OnlyFailures", "true"); err != nil {
		t.Fatal(err)
	}
	visit("history-staged", "/settings/history", "#staged-warning")
	if got := text("#staged-warning"); !strings.Contains(got, "TLSRPT.OnlyFailures") {
		t.Errorf("staged warning = %q, want the staged key", got)
	}
	submit("rollback without discarding", "#rollback-1")
	step("refused", chromedp.WaitVisible(chromedp.ID("flash")))
	if got := text("#flash"); !strings.Contains(got, "Not rolled back") || !strings.Contains(got, "staged") {
		t.Errorf("flash after a rollback with staged changes = %q, want a refusal", got)
	}
	if g := env.Settings.Current().Generation; g != 2 {
		t.Fatalf("generation %d after a refused rollback, want 2", g)
	}
	step("tick discard", chromedp.Click(chromedp.ID("discard-1")))
	submit("rollback discarding", "#rollback-1")
	step("rolled back", chromedp.WaitVisible(chromedp.ID("flash")))
	if got := text("#flash"); !strings.Contains(got, "Rolled back to generation 1 as generation 3") || !strings.Contains(got, "Discarded 1 staged change") {
		t.Errorf("flash after a discarding rollback = %q", got)
	}
	if got := text("#history tbody tr:last-child"); !strings.Contains(got, "same settings as in force") {
		t.Errorf("generation 1's row = %q, want no rollback offered (same settings as in force)", got)
	}
	screenshot("history-rolled-back")
	checkErrors("history-rolled-back")

	// Every other page renders without errors.
	visit("dashboard", "/", "#mail-in")
	visit("queue-expired-filter", "/queue?error=certificate-expired", "#queue-table")
	visit("confirm-bounce", "/queue/confirm?action=bounce&id="+consoletest.MsgExpired, "#confirm-count")
	visit("domains", "/domains", "#domains-table")
	visit("reports", "/reports", "#pending")
	// The record to publish for the report signing key, and that DNS does not have it yet.
	if got := text("#dkim-record"); got != consoletest.DKIM.Name+`. TXT "`+consoletest.DKIM.Value+`"` {
		t.Errorf("reports page DKIM record = %q", got)
	}
	if got := text("#dkim-status"); !strings.Contains(got, "does not publish it yet") {
		t.Errorf("reports page DKIM status = %q, want not published", got)
	}
	visit("report-preview", "/reports/preview?domain=example.org&day=2025-06-01", "#report-json")
	// The preview reads as a table beside the JSON: policy, counts, failures by result type.
	if got := text("#report-table tbody"); !strings.Contains(got, "sts") || !strings.Contains(got, "example.org") {
		t.Errorf("report preview table = %q, want the sts policy of example.org with its counts", got)
	}
	visit("settings-after", "/settings", "#settings-table")
	visit("review-empty", "/settings/review", "main")
	visit("account", "/account", "#password-form")

	// A bulk action: bounce every message whose last attempt failed with certificate-expired. The review
	// page says what the queue would do; only the confirmation does it.
	visit("queue-bulk", "/queue", "#bulk-form")
	step("choose bounce", chromedp.SetValue(chromedp.CSS(`#bulk-form select[name="action"]`), "bounce"))
	step("result type", chromedp.SendKeys(chromedp.CSS(`#bulk-form input[name="result_type"]`), "certificate-expired"))
	submit("review bulk", `#bulk-form button[type="submit"]`)
	step("bulk review", chromedp.WaitVisible(chromedp.ID("bulk-count")))
	if got := text("#bulk-count"); !strings.Contains(got, "Bounce 1 message, affecting 1 recipient") {
		t.Errorf("bulk review = %q, want Bounce 1 message, affecting 1 recipient", got)
	}
	screenshot("bulk-review")
	checkErrors("bulk review")
	if calls := env.Queue.Calls(); len(calls) != 0 {
		t.Fatalf("the review changed the queue: %v", calls)
	}
	submit("confirm bulk", "#bulk-confirm")
	step("queue after bulk", chromedp.WaitVisible(chromedp.ID("flash")))
	if got := text("#flash"); !strings.Contains(got, "Bounce: done for 1 message(s), 1 recipient(s)") {
		t.Errorf("flash after the bulk bounce = %q", got)
	}
	if calls := env.Queue.Calls(); len(calls) != 1 || calls[0] != "bounce "+consoletest.MsgExpired {
		t.Errorf("queue calls after the bulk bounce = %v, want [bounce %s]", calls, consoletest.MsgExpired)
	}
	checkErrors("queue after bulk")

	// The administrator manages the accounts on the Account page: adds a viewer, resets its password,
	// cannot remove the last administrator, adds and removes another account.
	const viewerPW = "a viewer's reset password"
	addAccount := func(name, role, pw string) {
		t.Helper()
		visit("account-"+name, "/account", "#add-account")
		step("add "+name, chromedp.SendKeys(chromedp.ID("add-name"), name),
			chromedp.SetValue(chromedp.ID("add-role"), role),
			chromedp.SendKeys(chromedp.ID("add-password"), pw))
		submit("add "+name, `#add-account button[type="submit"]`)
		step("added "+name, chromedp.WaitVisible(chromedp.CSS(`tr[data-account="`+name+`"]`)))
		if got := text("#flash"); !strings.Contains(got, "Account "+name+" ("+role+") added.") {
			t.Errorf("flash after adding %s = %q", name, got)
		}
	}
	addAccount("viewer", "viewer", "a viewer's first password")
	addAccount("temp", "administrator", "a temporary long password")
	screenshot("accounts")
	checkErrors("accounts")
	step("reset viewer", chromedp.SendKeys(chromedp.CSS(`tr[data-account="viewer"] input[name="password"]`), viewerPW))
	submit("reset viewer", `tr[data-account="viewer"] form[action="/accounts/password"] button`)
	step("reset", chromedp.WaitVisible(chromedp.ID("flash")))
	if got := text("#flash"); !strings.Contains(got, "New password of viewer set") {
		t.Errorf("flash after the reset = %q", got)
	}
	submit("remove temp", `tr[data-account="temp"] form[action="/accounts/remove"] button`)
	step("removed", chromedp.WaitVisible(chromedp.ID("flash")))
	if got := text("#flash"); !strings.Contains(got, "Account temp removed") {
		t.Errorf("flash after removing temp = %q", got)
	}
	submit("remove admin", `tr[data-account="admin"] form[action="/accounts/remove"] button`)
	step("refused", chromedp.WaitVisible(chromedp.ID("flash")))
	if got := text("#flash"); !strings.Contains(got, "last administrator") {
		t.Errorf("flash after removing the last administrator = %q", got)
	}
	accts, err := console.Accounts(env.PasswordFile)
	if err != nil || len(accts) != 2 || accts[0].Name != "admin" || accts[1].Name != "viewer" || accts[1].Role != console.Viewer {
		t.Errorf("accounts after the page's changes = %v %v, want admin and viewer", accts, err)
	}

	// A viewer sees the pages but no form to change anything.
	submit("log out", "form.logout button")
	step("login page after logout", chromedp.WaitVisible(chromedp.ID("password")))
	step("log in as viewer", chromedp.SendKeys(chromedp.ID("account"), "viewer"),
		chromedp.SendKeys(chromedp.ID("password"), viewerPW))
	submit("log in as viewer", "#login")
	step("dashboard as viewer", chromedp.WaitVisible(chromedp.ID("mail-in")))
	if got := text("#whoami"); got != "viewer (viewer)" {
		t.Errorf("account shown as %q, want viewer (viewer)", got)
	}
	visit("settings-viewer", "/settings", "#settings-table")
	for _, sel := range []string{`form[action="/settings/set"]`, `form[action="/settings/unset"]`, `form[method="post"]:not(.logout)`} {
		if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('`+sel+`').length`)); err != nil || n != 0 {
			t.Errorf("settings page as a viewer: %d %s (%v), want none", n, sel, err)
		}
	}
	visit("account-viewer", "/account", "#password-form")
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#accounts, #add-account, form[action^="/accounts/"]').length`)); err != nil || n != 0 {
		t.Errorf("account page as a viewer: %d account management elements (%v), want none", n, err)
	}
	visit("rules-viewer", "/rules", "main")
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('form[method="post"]:not(.logout)').length`)); err != nil || n != 0 {
		t.Errorf("rules page as a viewer: %d forms (%v), want none", n, err)
	}
}
