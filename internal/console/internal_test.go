package console

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

func TestBootstrapCreatesOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "console-password")
	pw, created, err := Bootstrap(path)
	if err != nil || !created || len(pw) < 20 {
		t.Fatalf("first Bootstrap: %q, %v, %v", pw, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if want := BootstrapAccount + " " + string(Administrator) + " " + hashScheme + "$"; !strings.HasPrefix(string(data), want) {
		t.Errorf("file holds %q: want a %s hash, not the password", data, hashScheme)
	}
	if ok, err := checkPassword(path, pw); !ok || err != nil {
		t.Errorf("bootstrap password does not verify: %v %v", ok, err)
	}
	if ok, _ := checkPassword(path, pw+"x"); ok {
		t.Error("a wrong password verifies")
	}
	pw2, created, err := Bootstrap(path)
	if pw2 != "" || created || err != nil {
		t.Errorf("second Bootstrap: %q, %v, %v; want nothing", pw2, created, err)
	}
	if _, err := checkPassword(filepath.Join(t.TempDir(), "none"), "x"); err != ErrNoPassword {
		t.Errorf("missing file: %v, want ErrNoPassword", err)
	}
	for _, bad := range []string{"", "pbkdf2-sha256$0$AAAA$AAAA", "pbkdf2-sha256$99999999999$AAAA$AAAA", "bcrypt$x", "pbkdf2-sha256$1$!!$AAAA"} {
		p := filepath.Join(t.TempDir(), "bad")
		os.WriteFile(p, []byte(bad), 0o600)
		if ok, err := checkPassword(p, "x"); ok || err == nil {
			t.Errorf("file %q: %v %v, want an error", bad, ok, err)
		}
	}
}

func TestTimelineWindowAndClasses(t *testing.T) {
	t.Parallel()
	tl := newTimeline(10)
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	ev := func(tls string, o queue.Outcome, rt tlsrpt.ResultType) delivery.Event {
		return delivery.Event{Domain: address.MustParseHost("example.org"), Result: queue.Result{Outcome: o, TLS: tls, ResultType: rt}}
	}
	tl.accepted(t0)
	tl.observe(t0, ev("verified TLS 1.3", queue.Delivered, ""))
	tl.observe(t0.Add(time.Hour), ev("unverified TLS 1.2", queue.Delivered, ""))
	tl.observe(t0.Add(2*time.Hour), ev("none", queue.Delivered, ""))
	tl.observe(t0.Add(3*time.Hour), ev("", queue.Deferred, "certificate-expired"))
	tl.observe(t0.Add(3*time.Hour), ev("", queue.Deferred, ""))
	s := tl.stats(t0.Add(3 * time.Hour))
	if s.Accepted != 1 || s.Delivered != [numClasses]int{1, 1, 1, 0} || s.Attempts != [numClasses]int{1, 1, 1, 2} || s.Deferred != 2 {
		t.Errorf("stats: %+v", s)
	}
	if s.Deferrals["certificate-expired"] != 1 || s.Deferrals[""] != 1 {
		t.Errorf("deferrals: %v", s.Deferrals)
	}
	if got := s.Hours[23].Attempts[classNoSession]; got != 2 {
		t.Errorf("last hour slot: %d no-session attempts, want 2", got)
	}
	if got := s.Hours[20].Attempts[classVerified]; got != 1 {
		t.Errorf("hour slot 20: %d verified, want 1 (%v)", got, s.Hours)
	}
	// 24 hours later the first three hours have left the window; a bucket reused for a later minute is reset.
	s = tl.stats(t0.Add(24*time.Hour + 2*time.Hour + time.Minute))
	if s.Accepted != 0 || s.Attempts != [numClasses]int{0, 0, 0, 2} {
		t.Errorf("after a day: %+v", s)
	}
	tl.observe(t0.Add(24*time.Hour), ev("verified TLS 1.3", queue.Delivered, ""))
	if s := tl.stats(t0.Add(24 * time.Hour)); s.Delivered[classVerified] != 1 || s.Accepted != 0 {
		t.Errorf("reused bucket: %+v", s)
	}
}

func TestTimelineDomainsBounded(t *testing.T) {
	t.Parallel()
	tl := newTimeline(3)
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		tl.observe(t0.Add(time.Duration(i)*time.Minute), delivery.Event{Domain: address.MustParseHost(fmt.Sprintf("d%d.example", i)),
			Result: queue.Result{Outcome: queue.Delivered, TLS: "verified TLS 1.3"}})
	}
	tl.observe(t0.Add(10*time.Minute), delivery.Event{Domain: address.MustParseHost("d2.example"), Result: queue.Result{Outcome: queue.Delivered, TLS: "none"}})
	var got []string
	for _, d := range tl.domainList() {
		got = append(got, d.Domain)
	}
	if fmt.Sprint(got) != "[d2.example d4.example d3.example]" {
		t.Errorf("domains: %v, want the 3 most recent, most recent first", got)
	}
	d, _ := tl.domain("d2.example")
	if d.Attempts != 2 || d.WouldFail != 1 || !d.LastWouldFail {
		t.Errorf("d2: %+v", d)
	}
}

func TestFailingEnforce(t *testing.T) {
	t.Parallel()
	tl := newTimeline(10)
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	fail := delivery.Event{Domain: address.MustParseHost("shop.example"), Plan: "mta-sts enforce",
		Result: queue.Result{Outcome: queue.Deferred, ResultType: "certificate-expired"}}
	ok := delivery.Event{Domain: address.MustParseHost("shop.example"), Plan: "mta-sts enforce",
		Result: queue.Result{Outcome: queue.Delivered, TLS: "verified TLS 1.3"}}
	tl.observe(t0, fail)
	tl.observe(t0.Add(time.Hour), fail)
	f := tl.failingEnforce()
	if len(f) != 1 || !f[0].FailingSince.Equal(t0) {
		t.Fatalf("failing: %+v", f)
	}
	tl.observe(t0.Add(2*time.Hour), ok)
	if f := tl.failingEnforce(); len(f) != 0 {
		t.Errorf("after a delivery: %+v", f)
	}
}

func TestLocalPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "/", "/queue?x=1": "/queue?x=1", "//evil": "/", "/\\evil": "/",
		"https://evil": "/", "/login": "/", "/a\r\nb": "/"} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWouldFailUnderEnforceWindow: the domain page's "would fail under enforce: N of M sessions in 24 h"
// counts sessions (the recipients of one session once), counts delivered sessions that saw a TLS failure
// (MTA-STS testing), and forgets sessions older than 24 hours.
func TestWouldFailUnderEnforceWindow(t *testing.T) {
	t.Parallel()
	tl := newTimeline(10)
	t0 := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	ev := func(session uint64, tls string, resultType tlsrpt.ResultType) delivery.Event {
		return delivery.Event{Domain: address.MustParseHost("partner.example"), Plan: "mta-sts testing", Session: session,
			Result: queue.Result{Outcome: queue.Delivered, TLS: tls, ResultType: resultType}}
	}
	tl.observe(t0.Add(-30*time.Hour), ev(1, "unverified TLS 1.3", "certificate-not-trusted")) // too old
	tl.observe(t0.Add(-2*time.Hour), ev(2, "unverified TLS 1.3", "certificate-not-trusted"))
	tl.observe(t0.Add(-2*time.Hour), ev(2, "unverified TLS 1.3", "certificate-not-trusted")) // same session
	tl.observe(t0.Add(-time.Hour), ev(3, "verified TLS 1.3", ""))
	tl.observe(t0, ev(4, "verified TLS 1.3", "validation-failure")) // testing mode: unlisted MX, delivered
	ds, ok := tl.domain("partner.example")
	if !ok {
		t.Fatal("domain not remembered")
	}
	got, warn := enforceVerdict(&ds, t0)
	if want := "would fail under enforce: 2 of 3 sessions in 24 h (last: validation-failure)"; got != want || !warn {
		t.Errorf("verdict = %q (warn %v), want %q", got, warn, want)
	}
	if got, _ := enforceVerdict(&ds, t0.Add(48*time.Hour)); got != "no TLS session seen in 24 h" {
		t.Errorf("two days later: %q", got)
	}
}
