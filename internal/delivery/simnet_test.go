package delivery_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/address"

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

const (
	pEnforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmax_age: 604800\r\n"
	pTesting = "version: STSv1\r\nmode: testing\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmax_age: 604800\r\n"
)

// recorder collects TLS report sessions.
type recorder struct {
	mu       sync.Mutex
	sessions []tlsrpt.Session
}

func (r *recorder) Record(s tlsrpt.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = append(r.sessions, s)
}

func (r *recorder) failures() []tlsrpt.ResultType {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []tlsrpt.ResultType
	for _, s := range r.sessions {
		if s.Failure != nil {
			out = append(out, s.Failure.ResultType)
		}
	}
	return out
}

func (r *recorder) successes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sessions {
		if s.Success {
			n++
		}
	}
	return n
}

type harness struct {
	t        *testing.T
	n        *simnet.Net
	d        *delivery.Deliverer
	rec      *recorder
	cache    *mtastscache.Cache
	settings *tlspolicy.Settings
	routes   []delivery.Route
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	h := &harness{t: t, n: n, rec: &recorder{}, settings: &tlspolicy.Settings{EnableMTASTS: true, Rules: map[string]tlspolicy.Rule{}}}
	db, err := store.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	resolver := n.Resolver()
	client := n.PolicyClient(3 * time.Second)
	h.cache, err = mtastscache.New(context.Background(), mtastscache.Options{
		DB: db, Resolver: resolver, Fetcher: &mtasts.Fetcher{Client: client, Timeout: 3 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	dec := &tlspolicy.Decider{
		Settings: func() *tlspolicy.Settings { return h.settings },
		STS:      cacheSource{h.cache},
		Roots:    n.RootPool(),
	}
	h.d = &delivery.Deliverer{
		Resolver: resolver, Decider: dec, Port: n.SMTPPort, Hostname: "gw.sender.test",
		ConnectTimeout: 10 * time.Second, CommandTimeout: 20 * time.Second, Recorder: h.rec,
		Routes: func() []delivery.Route { return h.routes },
	}
	return h
}

type cacheSource struct{ c *mtastscache.Cache }

func (s cacheSource) Lookup(ctx context.Context, d address.Domain) (tlspolicy.STSResult, error) {
	l, err := s.c.Get(ctx, d)
	if err != nil {
		return tlspolicy.STSResult{}, err
	}
	return tlspolicy.STSResult{Policy: l.Policy, ID: l.ID, Failure: l.Failure, FailureDetail: l.FailureDetail}, nil
}

// mx adds an MX receiver for example.com-style fixtures.
func (h *harness) mx(domain, host string, pref uint16, o simnet.MXOptions) *simnet.Receiver {
	h.t.Helper()
	o.Domain, o.Host, o.Pref = domain, host, pref
	r, err := h.n.AddMX(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// sts publishes an MTA-STS TXT record and policy for domain.
func (h *harness) sts(domain, id, policy string) *simnet.PolicyHost {
	h.t.Helper()
	h.n.DNS.AddTXT("_mta-sts."+domain, "v=STSv1; id="+id)
	p, err := h.n.ServeMTASTSPolicy(domain, policy)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) cert(ca *testpki.CA, l testpki.Leaf) *tls.Certificate {
	c := ca.MustIssue(l)
	return &c
}

func job(id string, rcpts ...string) queue.Job {
	body := fmt.Sprintf("From: alice@sender.test\r\nTo: %s\r\nSubject: test %s\r\nMessage-ID: <%s@sender.test>\r\n\r\nHello.\r\n", strings.Join(rcpts, ", "), id, id)
	j := queue.Job{MsgID: id, From: address.MustParsePath("alice@sender.test"), Size: int64(len(body)), Attempt: 1,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	for _, r := range rcpts {
		j.Recipients = append(j.Recipients, queue.Recipient{Addr: address.MustParseAddress(r)})
	}
	return j
}

func (h *harness) deliver(domain string, jobs ...queue.Job) []queue.Result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return h.d.Deliver(ctx, queue.Batch{Domain: address.MustParseHost(domain), Jobs: jobs})
}

func one(t *testing.T, rs []queue.Result) queue.Result {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("got %d results, want 1: %+v", len(rs), rs)
	}
	return rs[0]
}

// --- Gateway core: TLS levels and fallback -----------------------------------------------------------------

func TestDeliverVerifiedTLS(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "verified TLS") || r.RemoteMTA != "mx1.example.com" {
		t.Fatalf("result = %+v, want delivered over verified TLS by mx1", r)
	}
	msgs := mx1.Messages()
	if len(msgs) != 1 || !msgs[0].TLS || msgs[0].SNI != "mx1.example.com" || msgs[0].To[0] != "bob@example.com" {
		t.Fatalf("mx1 received %+v, want one message over TLS with SNI mx1.example.com (STS-79)", msgs)
	}
	if msgs[0].Helo != "gw.sender.test" {
		t.Errorf("EHLO name = %q, want gw.sender.test", msgs[0].Helo)
	}
}

func TestDeliverOpportunisticUnverified(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "unverified TLS") {
		t.Fatalf("result = %+v, want delivered over unverified TLS", r)
	}
	if m := mx1.Messages(); len(m) != 1 || !m[0].TLS {
		t.Fatalf("mx1 got %+v, want the message over TLS", m)
	}
	if f := h.rec.failures(); len(f) != 0 {
		t.Errorf("no-policy session recorded failures %v; an unverifiable certificate is not a failure without a policy", f)
	}
}

func TestDeliverPlainWhenNoSTARTTLS(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.NotOffered})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.TLS != "none" {
		t.Fatalf("result = %+v, want delivered in plain text", r)
	}
	if m := mx1.Messages(); len(m) != 1 || m[0].TLS {
		t.Fatalf("mx1 got %+v, want the message in plain text", m)
	}
	// RFC 8460 Section 4.3.1: a no-policy-found session without STARTTLS is a reportable failure.
	if f := h.rec.failures(); len(f) != 1 || f[0] != tlsrpt.ResultSTARTTLSNotSupported {
		t.Errorf("recorded failures %v, want [starttls-not-supported]", f)
	}
}

func TestOpportunisticHandshakeFailureRetriesPlainSameMX(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.HandshakeFail})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.TLS != "none" || r.RemoteMTA != "mx1.example.com" {
		t.Fatalf("result = %+v, want a plain-text retry of mx1", r)
	}
	if m := mx1.Messages(); len(m) != 1 || m[0].TLS {
		t.Fatalf("mx1 got %+v", m)
	}
}

func TestFallbackToSecondMXWhenFirstRefusesConnections_SMTP8(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
	mx1.Stop()
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || len(mx2.Messages()) != 1 {
		t.Fatalf("result = %+v, want delivery by mx2", r)
	}
	// STS-88: a refused TCP connection is not a TLS failure.
	if f := h.rec.failures(); len(f) != 0 {
		t.Errorf("recorded failures %v, want none", f)
	}
}

func TestFallbackToSecondMXOnHandshakeFailureUnderRequiredVerify(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Rules["example.com"] = tlspolicy.Rule{Level: tlspolicy.LevelRequiredVerify}
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.HandshakeFail})
	mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || !strings.HasPrefix(r.TLS, "verified") {
		t.Fatalf("result = %+v, want verified delivery by mx2", r)
	}
	if len(mx1.Messages()) != 0 || len(mx2.Messages()) != 1 {
		t.Fatalf("mx1 got %d, mx2 got %d messages", len(mx1.Messages()), len(mx2.Messages()))
	}
}

func TestRequiredVerifyBadCertificateDefers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.Rules["example.com"] = tlspolicy.Rule{Level: tlspolicy.LevelRequiredVerify}
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"other.test"}})})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || r.ResultType != tlsrpt.ResultCertificateHostMismatch {
		t.Fatalf("result = %+v, want deferred with certificate-host-mismatch", r)
	}
	if len(mx1.Messages()) != 0 {
		t.Fatal("mx1 received the message despite the wrong certificate")
	}
}

func TestMixedRecipientReplies_SMTP13(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{RcptReply: func(rcpt string) *smtp.SMTPError {
		switch rcpt {
		case "gone@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}
		case "busy@example.com":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	}})
	rs := h.deliver("example.com", job("m1", "bob@example.com", "gone@example.com", "busy@example.com"))
	got := map[string]queue.Result{}
	for _, r := range rs {
		got[r.Rcpt.String()] = r
	}
	if got["bob@example.com"].Outcome != queue.Delivered {
		t.Errorf("bob: %+v, want delivered", got["bob@example.com"])
	}
	if g := got["gone@example.com"]; g.Outcome != queue.Failed || g.Code != 550 || g.Enhanced != "5.1.1" || g.RemoteMTA != "mx1.example.com" {
		t.Errorf("gone: %+v, want failed 550 5.1.1 from mx1", g)
	}
	if g := got["busy@example.com"]; g.Outcome != queue.Deferred || g.Code != 452 {
		t.Errorf("busy: %+v, want deferred 452", g)
	}
	if m := mx1.Messages(); len(m) != 1 || len(m[0].To) != 1 || m[0].To[0] != "bob@example.com" {
		t.Errorf("mx1 got %+v, want one message for bob only", m)
	}
}

func TestNullMXAndNXDOMAINBounce_SMTP2_SMTP6(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.n.DNS.SetNullMX("nomail.test")
	ip, _ := h.n.AllocIP()
	h.n.DNS.AddA("nomail.test", ip)
	r := one(t, h.deliver("nomail.test", job("m1", "bob@nomail.test")))
	if r.Outcome != queue.Failed || r.Enhanced != "5.1.10" {
		t.Errorf("null MX: %+v, want failed 5.1.10", r)
	}
	r = one(t, h.deliver("nonexistent.test", job("m2", "bob@nonexistent.test")))
	if r.Outcome != queue.Failed || r.Enhanced != "5.1.2" {
		t.Errorf("NXDOMAIN: %+v, want failed 5.1.2", r)
	}
}

func TestTemporaryDNSFailureDefers_SMTP3(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.n.DNS.SetFailure("flaky.test", 15 /* MX */, simnet.ServFail)
	r := one(t, h.deliver("flaky.test", job("m1", "bob@flaky.test")))
	if r.Outcome != queue.Deferred {
		t.Errorf("SERVFAIL: %+v, want deferred", r)
	}
}

func TestSessionReuseForSeveralMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	rs := h.deliver("example.com", job("m1", "a@example.com"), job("m2", "b@example.com"), job("m3", "c@example.com"))
	for _, r := range rs {
		if r.Outcome != queue.Delivered {
			t.Fatalf("result %+v, want delivered", r)
		}
	}
	if got := mx1.Connections(); got != 1 {
		t.Errorf("mx1 saw %d connections for 3 messages, want 1", got)
	}
	if len(mx1.Messages()) != 3 {
		t.Errorf("mx1 got %d messages, want 3", len(mx1.Messages()))
	}
}

func TestStaticRouteIgnoresMTASTS_STS2(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// example.com publishes enforce listing only mx1, but mail goes through the smart host, whose
	// certificate does not name it: MTA-STS must not apply to the static route.
	h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n")
	relay, err := h.n.AddSMTPHost("relay.provider.test", simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"relay.provider.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	h.routes = []delivery.Route{{Domains: []string{"example.com"}, Hosts: []string{"relay.provider.test"}, Level: tlspolicy.LevelOpportunistic}}
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "relay.provider.test" || len(relay.Messages()) != 1 {
		t.Fatalf("result %+v, want delivery to the smart host", r)
	}
	if h.n.DNS.Queried("_mta-sts.example.com", 16) {
		t.Error("a static route looked up the recipient domain's MTA-STS record")
	}
	if len(h.rec.sessions) != 0 {
		t.Errorf("static route sessions recorded for TLS reporting: %+v", h.rec.sessions)
	}
}

// RFC 8460 Section 3 (RPT-32): deliveries of TLS reports are never recorded, so reports never cause reports.
func TestReportMailIsNotRecorded_RPT32(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.NotOffered})
	h.sts("example.com", "1", "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 604800\n")
	j := job("r1", "tlsrpt@example.com")
	j.Report = true
	r := one(t, h.deliver("example.com", j))
	if r.Outcome != queue.Delivered || len(mx1.Messages()) != 1 {
		t.Fatalf("result = %+v, want the report delivered", r)
	}
	if len(h.rec.sessions) != 0 {
		t.Errorf("the delivery of a report was recorded: %+v", h.rec.sessions)
	}
}

// RFC 8460 Section 3 (RPT-32): reports are delivered despite TLS failures: the rua domain's enforce policy
// does not block them (opportunistic TLS, then clear text).
func TestReportMailNotBlockedByEnforce_RPT32(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("reports.test", "mx1.reports.test", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.reports.test"}})})
	h.sts("reports.test", "1", "version: STSv1\nmode: enforce\nmx: mx1.reports.test\nmax_age: 604800\n")
	j := job("r1", "tlsrpt@reports.test")
	j.Report = true
	r := one(t, h.deliver("reports.test", j))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "unverified") || len(mx1.Messages()) != 1 {
		t.Fatalf("untrusted certificate: %+v, want the report delivered over unverified TLS", r)
	}
	mx1.SetMode(simnet.NotOffered)
	j = job("r2", "tlsrpt@reports.test")
	j.Report = true
	r = one(t, h.deliver("reports.test", j))
	if r.Outcome != queue.Delivered || r.TLS != "none" || len(mx1.Messages()) != 2 {
		t.Fatalf("no STARTTLS: %+v, want the report delivered in clear text", r)
	}
	// Ordinary mail to the same domain is still held to the policy.
	r = one(t, h.deliver("reports.test", job("m1", "someone@reports.test")))
	if r.Outcome != queue.Deferred {
		t.Fatalf("ordinary mail: %+v, want deferred under enforce", r)
	}
}

func TestSessionKeptForNextBatchUnderSamePlan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.d.IdleTimeout = time.Minute
	t.Cleanup(h.d.Close)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	for i, id := range []string{"m1", "m2", "m3"} {
		if r := one(t, h.deliver("example.com", job(id, "bob@example.com"))); r.Outcome != queue.Delivered {
			t.Fatalf("batch %d: %+v", i, r)
		}
	}
	if got := mx1.Connections(); got != 1 {
		t.Errorf("3 batches used %d connections, want 1 kept session", got)
	}
	if s := h.rec.successes(); s != 1 {
		t.Errorf("recorded %d sessions, want 1 (a kept session is one session)", s)
	}
	// A committed change of plan never rides on the old session.
	h.settings = &tlspolicy.Settings{EnableMTASTS: true, Rules: map[string]tlspolicy.Rule{"example.com": {Level: tlspolicy.LevelRequiredVerify}}}
	if r := one(t, h.deliver("example.com", job("m4", "bob@example.com"))); r.Outcome != queue.Delivered || r.Policy != "required-verify" {
		t.Fatalf("after the change: %+v", r)
	}
	if got := mx1.Connections(); got != 2 {
		t.Errorf("after a plan change, %d connections, want a new one (2)", got)
	}
	// Closing ends the kept sessions; delivery still works without keeping any.
	h.d.Close()
	if r := one(t, h.deliver("example.com", job("m5", "bob@example.com"))); r.Outcome != queue.Delivered {
		t.Fatalf("after Close: %+v", r)
	}
	if got := len(mx1.Messages()); got != 5 {
		t.Errorf("mx1 got %d messages, want 5", got)
	}
}

// RFC 3461 Section 5.2: the result says whether the next hop took the DSN parameters (SMTP-22).
func TestDeliveredReportsNextHopDSN_SMTP22(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	j := job("m1", "bob@example.com")
	j.Recipients[0].Notify = []string{"SUCCESS", "FAILURE"}
	j.Recipients[0].ORcpt = "rfc822;Bob@Example.com"
	r := one(t, h.deliver("example.com", j))
	if r.Outcome != queue.Delivered || !r.NextHopDSN {
		t.Fatalf("result = %+v, want delivered with NextHopDSN (simnet advertises DSN)", r)
	}
	m := mx1.Messages()
	if len(m) != 1 || len(m[0].RcptOpts[0].Notify) != 2 || m[0].RcptOpts[0].OriginalRecipient != "Bob@Example.com" {
		t.Fatalf("the next hop got RCPT options %+v, want NOTIFY and ORCPT passed on", m[0].RcptOpts)
	}
}

// A session that recorded a TLS failure (here: testing mode, untrusted certificate) is never kept: the next
// batch is checked, and counted for TLS reporting, again.
func TestSessionWithTLSFailureNotKept(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.d.IdleTimeout = time.Minute
	t.Cleanup(h.d.Close)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	h.sts("example.com", "1", pTesting)
	for _, id := range []string{"m1", "m2"} {
		if r := one(t, h.deliver("example.com", job(id, "bob@example.com"))); r.Outcome != queue.Delivered {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if got := mx1.Connections(); got != 2 {
		t.Errorf("%d connections for 2 batches, want 2 (no kept session after a TLS failure)", got)
	}
	if f := h.rec.failures(); len(f) != 2 {
		t.Errorf("recorded failures %v, want one per session", f)
	}
}
