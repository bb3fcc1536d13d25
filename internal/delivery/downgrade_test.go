package delivery_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// attemptLog records every result the deliverer hands back to the queue, with the clock at the time.
type attemptLog struct {
	d     *delivery.Deliverer
	clock *clocktest.Clock
	mu    sync.Mutex
	log   []loggedResult
}

type loggedResult struct {
	at time.Time
	r  queue.Result
}

func (a *attemptLog) Deliver(ctx context.Context, b queue.Batch) []queue.Result {
	rs := a.d.Deliver(ctx, b)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range rs {
		a.log = append(a.log, loggedResult{a.clock.Now(), r})
	}
	return rs
}

// from returns the results from the i-th on.
func (a *attemptLog) from(i int) []loggedResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]loggedResult(nil), a.log[i:]...)
}

func (a *attemptLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.log)
}

// Downgrade resistance over a simulated day (RFC 8461 Section 5.1, Section 10.2; STS-16, STS-63): with an
// enforce policy cached, the _mta-sts TXT record vanishes, the policy host goes down, and mx1.example.com
// is taken over by a rogue server: first with a self-signed certificate, then with a valid certificate for
// another name, and finally the MX record itself points at a rogue host with a valid certificate for its
// own name. The queue (real spool and index) runs every due attempt for 24 hours of injected clock:
// the rogues get 0 messages and every attempt is deferred with the RFC 8460 result type of its phase.
func TestDowngradeOverSimulatedDay_STS16_STS63(t *testing.T) {
	t.Parallel()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	start := time.Now().Truncate(time.Second)
	clock := clocktest.New(start)

	dir := t.TempDir()
	db, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	resolver := n.Resolver()
	client := n.PolicyClient(3 * time.Second)
	cache, err := mtastscache.New(context.Background(), mtastscache.Options{
		DB: db, Resolver: resolver, Now: clock.Now,
		Fetcher: &mtasts.Fetcher{Client: client, Timeout: 3 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	settings := &tlspolicy.Settings{EnableMTASTS: true, Rules: map[string]tlspolicy.Rule{}}
	rec := &recorder{}
	d := &delivery.Deliverer{
		Resolver: resolver,
		Decider: &tlspolicy.Decider{
			Settings: func() *tlspolicy.Settings { return settings },
			STS:      cacheSource{cache}, Roots: n.RootPool(), Now: clock.Now,
		},
		Port: n.SMTPPort, Hostname: "gw.sender.test", Now: clock.Now,
		ConnectTimeout: 10 * time.Second, CommandTimeout: 20 * time.Second, Recorder: rec,
		Routes: func() []delivery.Route { return nil },
	}
	attempts := &attemptLog{d: d, clock: clock}
	q, err := queue.Open(context.Background(), queue.Options{
		Dir: filepath.Join(dir, "spool"), DB: db, Deliverer: attempts, Now: clock.Now,
		Rand: rand.New(rand.NewPCG(1, 2)), Hostname: "gw.sender.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	submit := func(tag string) string {
		t.Helper()
		body := fmt.Sprintf("From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: %s\r\n\r\nsecret %s\r\n", tag, tag)
		id, err := q.Submit(context.Background(), queue.Envelope{From: address.MustParsePath("alice@sender.test"),
			Recipients: []queue.Recipient{{Addr: address.MustParseAddress("bob@example.com")}}}, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	runOnce := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := q.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// runUntil advances the clock from due attempt to due attempt, running each, until end.
	runUntil := func(end time.Time, ids ...string) int {
		t.Helper()
		runs := 0
		for {
			next := end
			for _, id := range ids {
				m, err := q.Get(context.Background(), id)
				if err != nil {
					t.Fatalf("message %s: %v", id, err)
				}
				if m.Queued == 0 {
					t.Fatalf("message %s left the queue: %+v", id, m.MessageInfo)
				}
				if m.NextAttempt.Before(next) {
					next = m.NextAttempt
				}
			}
			if !next.Before(end) {
				clock.Set(end)
				return runs
			}
			if next.After(clock.Now()) {
				clock.Set(next)
			}
			runOnce()
			runs++
			if runs > 200 {
				t.Fatal("more than 200 queue runs in a simulated day")
			}
		}
	}

	// Before the attack: the legitimate MX, a valid policy, one delivery that caches the policy.
	mx1, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	ph, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	if err != nil {
		t.Fatal(err)
	}
	submit("before")
	runOnce()
	if got := len(mx1.Messages()); got != 1 || !mx1.Messages()[0].TLS {
		t.Fatalf("before the attack: mx1 has %d messages (want 1 over TLS)", got)
	}

	// The attack: no TXT, no policy host, mx1.example.com resolves to a rogue with a self-signed certificate.
	selfSigned, err := testpki.SelfSigned("mx1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := n.AddMX(simnet.MXOptions{Host: "mx1.example.com", NoDNS: true, Cert: &selfSigned})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.Remove("_mta-sts.example.com", dns.TypeTXT)
	ph.Stop()
	mx1.Stop()
	n.DNS.Remove("mx1.example.com", dns.TypeA)
	n.DNS.AddA("mx1.example.com", rogue.IP())
	attack := attempts.count()
	ids := []string{submit("self-signed phase")}
	runs := runUntil(start.Add(8*time.Hour), ids...)

	// Phase 2: the rogue now has a certificate from a trusted CA, for another name.
	other := n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx.rogue.test"}})
	rogue.SetCert(&other)
	phase2 := clock.Now()
	ids = append(ids, submit("wrong-name phase"))
	runs += runUntil(start.Add(16*time.Hour), ids...)

	// Phase 3: the MX record points at a rogue host with a valid certificate for its own name.
	rogueMX, err := n.AddMX(simnet.MXOptions{Host: "mx.rogue.test", NoDNS: true, Cert: &other})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.Remove("example.com", dns.TypeMX)
	n.DNS.AddMX("example.com", "mx.rogue.test", 10)
	n.DNS.AddA("mx.rogue.test", rogueMX.IP())
	phase3 := clock.Now()
	ids = append(ids, submit("rogue-MX phase"))
	runs += runUntil(start.Add(24*time.Hour), ids...)

	if got := len(rogue.Messages()) + len(rogueMX.Messages()); got != 0 {
		t.Fatalf("the rogues received %d messages", got)
	}
	if rogue.Connections() == 0 {
		t.Error("the rogue at mx1's address was never contacted: the test did not exercise certificate checks")
	}
	if c := rogueMX.Connections(); c != 0 {
		t.Errorf("the MX not in the cached policy was connected to %d times (STS-69)", c)
	}
	want := func(at time.Time) tlsrpt.ResultType {
		switch {
		case !at.Before(phase3):
			return tlsrpt.ResultValidationFailure
		case !at.Before(phase2):
			return tlsrpt.ResultCertificateHostMismatch
		default:
			return tlsrpt.ResultCertificateNotTrusted
		}
	}
	byType := map[tlsrpt.ResultType]int{}
	after := attempts.from(attack)
	for _, l := range after {
		r := l.r
		byType[r.ResultType]++
		if r.Outcome != queue.Deferred || r.ResultType != want(l.at) || !strings.Contains(r.Policy, "enforce") {
			t.Errorf("attempt at +%v: %s %s policy %q (%s), want deferred %s under the cached enforce policy",
				l.at.Sub(start), r.Outcome, r.ResultType, r.Policy, r.Text, want(l.at))
		}
	}
	for _, rt := range []tlsrpt.ResultType{tlsrpt.ResultCertificateNotTrusted, tlsrpt.ResultCertificateHostMismatch, tlsrpt.ResultValidationFailure} {
		if byType[rt] == 0 {
			t.Errorf("no attempt deferred with %s", rt)
		}
	}
	if got := len(ph.Requests()); got != 1 {
		t.Errorf("policy host saw %d requests, want only the first fetch", got)
	}
	t.Logf("simulated day: %d queue runs, %d attempts after the attack, all deferred %v; rogue connections %d, rogue deliveries 0",
		runs, len(after), byType, rogue.Connections())
}
