package delivery_test

// Requirement tests for RFC 8461 items of REQUIREMENTS.md section 1 that had no delivery-level test yet.
// Each test names its item; docs/rfc.md lists them.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// evilMX1 is an mx1 whose certificate chains to EvilRoot: enforce refuses it, no policy delivers to it.
func evilMX1(h *harness, domain string) *simnet.Receiver {
	h.t.Helper()
	return h.mx(domain, "mx1."+domain, 10, simnet.MXOptions{
		Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1." + domain}}),
	})
}

// stsFailures returns the recorded failures reported under policy-type sts.
func (r *recorder) stsFailures() []tlsrpt.ResultType {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []tlsrpt.ResultType
	for _, s := range r.sessions {
		if s.Failure != nil && s.Policy.Type == tlsrpt.PolicySTS {
			out = append(out, s.Failure.ResultType)
		}
	}
	return out
}

// The Policy Domain is the recipient domain: its _mta-sts TXT record is queried and its policy applied.
func TestPolicyDomainIsRecipientDomain_STS1(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	p := h.sts("example.com", "20240101T000000", pEnforce)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" || !strings.HasPrefix(r.TLS, "verified") {
		t.Fatalf("result = %+v, want DELIVERED(mx1, tls=auth)", r)
	}
	if r.Policy != "mta-sts enforce" {
		t.Errorf("policy = %q, want mta-sts enforce", r.Policy)
	}
	if !h.n.DNS.Queried("_mta-sts.example.com", dns.TypeTXT) {
		t.Error("no TXT query for _mta-sts.example.com")
	}
	if n := len(p.Requests()); n != 1 {
		t.Errorf("%d policy fetches, want 1", n)
	}
	if len(mx1.Messages()) != 1 {
		t.Errorf("mx1 got %d messages, want 1", len(mx1.Messages()))
	}
}

// An address-literal recipient has no MTA-STS policy: no _mta-sts query, opportunistic delivery.
func TestAddressLiteralHasNoPolicy_STS3(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	lit, err := h.n.AddSMTPHost("literal.example.com", simnet.MXOptions{NoDNS: true})
	if err != nil {
		t.Fatal(err)
	}
	domain := "[" + lit.IP().String() + "]"
	r := one(t, h.deliver(domain, job("m1", "bob@"+domain)))
	if r.Outcome != queue.Delivered || len(lit.Messages()) != 1 {
		t.Fatalf("result = %+v, want delivery to the address literal", r)
	}
	for _, q := range h.n.DNS.Queries() {
		if strings.HasPrefix(q.Name, "_mta-sts.") {
			t.Errorf("address literal caused the MTA-STS query %s", q)
		}
	}
	if f := h.rec.stsFailures(); len(f) != 0 {
		t.Errorf("sts failures %v recorded for an address literal", f)
	}
}

// A policy is never taken from a parent zone of the recipient domain.
func TestNoParentZonePolicy_STS4(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// example.com has an enforce policy listing only other.test; mail.example.com has none.
	parent := h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: other.test\nmax_age: 604800\n")
	mx1 := h.mx("mail.example.com", "mx1.example.com", 10, simnet.MXOptions{})
	r := one(t, h.deliver("mail.example.com", job("m1", "bob@mail.example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" || len(mx1.Messages()) != 1 {
		t.Fatalf("result = %+v, want DELIVERED(mx1)", r)
	}
	if h.n.DNS.Queried("_mta-sts.example.com", dns.TypeTXT) {
		t.Error("the parent zone's _mta-sts record was queried")
	}
	if n := len(parent.Requests()); n != 0 {
		t.Errorf("%d requests to mta-sts.example.com, want 0", n)
	}
	if !h.n.DNS.Queried("_mta-sts.mail.example.com", dns.TypeTXT) {
		t.Error("the recipient domain's own _mta-sts record was not queried")
	}
}

// Recipient domains are handled in A-label form: the TXT query and the policy host use the A-label.
func TestIDNPolicyDomainUsesALabels_STS5(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const alabel = "xn--bcher-kva.example"
	mx1 := h.mx(alabel, "mx1."+alabel, 10, simnet.MXOptions{})
	p := h.sts(alabel, "1", "version: STSv1\nmode: enforce\nmx: mx1."+alabel+"\nmax_age: 604800\n")
	r := one(t, h.deliver("bücher.example", job("m1", "bob@bücher.example")))
	if r.Outcome != queue.Delivered || len(mx1.Messages()) != 1 || r.Policy != "mta-sts enforce" {
		t.Fatalf("result = %+v, want delivery under the A-label domain's enforce policy", r)
	}
	if !h.n.DNS.Queried("_mta-sts."+alabel, dns.TypeTXT) {
		t.Errorf("no TXT query for _mta-sts.%s; queries: %v", alabel, h.n.DNS.Queries())
	}
	reqs := p.Requests()
	if len(reqs) != 1 || reqs[0].SNI != "mta-sts."+alabel || !strings.HasPrefix(reqs[0].Host, "mta-sts."+alabel) {
		t.Errorf("policy requests %+v, want one with SNI and Host mta-sts.%s", reqs, alabel)
	}
}

// The _mta-sts record may be a CNAME (or a chain of them); the policy is still fetched from
// mta-sts.<recipient domain>, never from the CNAME target's domain.
func TestSTSRecordThroughCNAME_STS15(t *testing.T) {
	t.Parallel()
	for _, hops := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d hops", hops), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			mx1 := evilMX1(h, "example.com")
			mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
			if hops == 1 {
				h.n.DNS.AddCNAME("_mta-sts.example.com", "_mta-sts.provider.test")
			} else {
				h.n.DNS.AddCNAME("_mta-sts.example.com", "_mta-sts.hop.test")
				h.n.DNS.AddCNAME("_mta-sts.hop.test", "_mta-sts.provider.test")
			}
			h.n.DNS.AddTXT("_mta-sts.provider.test", "v=STSv1; id=9")
			p, err := h.n.ServeMTASTSPolicy("example.com", pEnforce)
			if err != nil {
				t.Fatal(err)
			}
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || len(mx2.Messages()) != 1 {
				t.Fatalf("result = %+v, want the enforce policy applied (mx1 skipped, mx2 used)", r)
			}
			if len(mx1.Messages()) != 0 {
				t.Fatal("mx1 (untrusted certificate) received the message: the policy was not applied")
			}
			if len(p.Requests()) != 1 {
				t.Errorf("%d requests to mta-sts.example.com, want 1", len(p.Requests()))
			}
			for _, q := range h.n.DNS.Queries() {
				if strings.HasPrefix(q.Name, "mta-sts.provider.test") || strings.HasPrefix(q.Name, "mta-sts.hop.test") {
					t.Errorf("policy host looked up under the CNAME target: %s", q)
				}
			}
		})
	}
}

// Mode none (a newly fetched none policy replacing enforce) means no validation and no MTA-STS deferral;
// removing the record and policy later changes nothing (STS-61, STS-86).
func TestNoneModeReplacesEnforceAndDeliversWithoutValidation_STS61_STS86(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	p := h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered || r.Policy != "mta-sts enforce" {
		t.Fatalf("first delivery: %+v, want delivered under enforce", r)
	}
	h.n.DNS.Remove("_mta-sts.example.com", dns.TypeTXT)
	h.n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=2")
	p.SetPolicy("version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n")
	mx1.SetMode(simnet.NotOffered)
	r := one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.TLS != "none" {
		t.Fatalf("after mode none: %+v, want DELIVERED(mx1, tls=none)", r)
	}
	if f := h.rec.stsFailures(); len(f) != 0 {
		t.Errorf("sts failures %v recorded under mode none", f)
	}
	// The domain removes MTA-STS entirely: still delivered.
	h.n.DNS.Remove("_mta-sts.example.com", dns.TypeTXT)
	p.Stop()
	r = one(t, h.deliver("example.com", job("m3", "bob@example.com")))
	if r.Outcome != queue.Delivered || len(mx1.Messages()) != 3 {
		t.Fatalf("after removal: %+v (mx1 has %d messages), want delivered", r, len(mx1.Messages()))
	}
	if f := h.rec.stsFailures(); len(f) != 0 {
		t.Errorf("sts failures %v recorded after the none policy", f)
	}
}

// With a cached policy in force, a failed discovery is reported (sts-policy-fetch-error), except when the
// cached mode is none.
func TestCachedPolicyDiscoveryFailureReported_STS93(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, policy string
		want         []tlsrpt.ResultType
	}{
		{"enforce", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n", []tlsrpt.ResultType{tlsrpt.ResultSTSPolicyFetchError}},
		{"none", "version: STSv1\nmode: none\nmax_age: 604800\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
			p := h.sts("example.com", "1", tc.policy)
			if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered {
				t.Fatalf("first delivery: %+v", r)
			}
			h.n.DNS.SetFailure("_mta-sts.example.com", dns.TypeTXT, simnet.ServFail)
			p.Stop()
			r := one(t, h.deliver("example.com", job("m2", "bob@example.com")))
			if r.Outcome != queue.Delivered {
				t.Fatalf("second delivery: %+v, want delivered", r)
			}
			got := h.rec.stsFailures()
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Errorf("sts failures %v, want %v", got, tc.want)
			}
		})
	}
}

// Enforce: a bounce is preceded by a fresh TXT check. The queue makes a final attempt at expiry (see
// queue.TestExpiryBounceAfterFinalAttempt_STS84); this shows that an attempt blocked by enforce queries the
// TXT record and, when the id changed, fetches and applies the new policy instead of failing.
func TestBlockedAttemptChecksTXTForNewPolicy_STS84(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := evilMX1(h, "example.com")
	p := h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || len(mx1.Messages()) != 0 {
		t.Fatalf("blocked attempt: %+v, want deferred and nothing sent", r)
	}
	// Control: the same id, the next (final) attempt is still only deferred, never failed by delivery.
	h.n.DNS.ResetQueries()
	r = one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred {
		t.Fatalf("second blocked attempt: %+v, want deferred (the queue bounces only at expiry)", r)
	}
	if !h.n.DNS.Queried("_mta-sts.example.com", dns.TypeTXT) {
		t.Error("blocked attempt did not check the _mta-sts TXT record")
	}
	// Just before giving up, the domain moves to mx3 under a new id.
	h.n.DNS.Remove("example.com", dns.TypeMX)
	mx3 := h.mx("example.com", "mx3.example.com", 10, simnet.MXOptions{})
	p.SetPolicy("version: STSv1\nmode: enforce\nmx: mx3.example.com\nmax_age: 604800\n")
	h.n.DNS.Remove("_mta-sts.example.com", dns.TypeTXT)
	h.n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=2")
	h.n.DNS.ResetQueries()
	r = one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx3.example.com" || len(mx3.Messages()) != 1 {
		t.Fatalf("final attempt: %+v, want DELIVERED(mx3) under the new policy", r)
	}
	if !h.n.DNS.Queried("_mta-sts.example.com", dns.TypeTXT) {
		t.Error("final attempt did not check the _mta-sts TXT record")
	}
}

// A refused TCP connection is not an MTA-STS failure: the next MX is tried and nothing is reported.
func TestConnectFailureIsNotPolicyFailure_STS88(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
	h.sts("example.com", "1", pEnforce)
	mx1.Stop()
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || len(mx2.Messages()) != 1 {
		t.Fatalf("result = %+v, want DELIVERED(mx2)", r)
	}
	if f := h.rec.failures(); len(f) != 0 {
		t.Errorf("recorded failures %v, want none for a refused connection", f)
	}
	if s := h.rec.successes(); s != 1 {
		t.Errorf("recorded %d successes, want 1", s)
	}
}

// Spec: STS-95 allows an asynchronous first fetch; mxgate fetches synchronously (bounded by the fetch
// timeout), so the very first message to a new domain already sees its enforce policy.
func TestFirstContactWaitsForPolicy_STS95(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := evilMX1(h, "example.com")
	mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
	h.sts("example.com", "1", pEnforce)
	for i := range 2 {
		r := one(t, h.deliver("example.com", job(fmt.Sprintf("m%d", i), "bob@example.com")))
		if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || r.Policy != "mta-sts enforce" {
			t.Fatalf("message %d: %+v, want enforce applied (mx2)", i+1, r)
		}
	}
	if n := len(mx1.Messages()); n != 0 {
		t.Errorf("mx1 (untrusted) received %d messages; the first message left without the policy", n)
	}
	if n := len(mx2.Messages()); n != 2 {
		t.Errorf("mx2 received %d messages, want 2", n)
	}
}

// scriptedMX is a hand-written SMTP server for what simnet cannot express: different EHLO answers
// before and after STARTTLS, and STARTTLS advertised again after TLS.
type scriptedMX struct {
	ln   net.Listener
	cert tls.Certificate

	mu  sync.Mutex
	log []string // commands received, "[tls] " prefixed after the handshake
	got bool     // a message was accepted
}

func newScriptedMX(t *testing.T, cert tls.Certificate) *scriptedMX {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedMX{ln: ln, cert: cert}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

func (s *scriptedMX) note(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, line)
}

func (s *scriptedMX) serve(c net.Conn) {
	defer c.Close()
	const maxAfterTLS = 100000000
	rd := bufio.NewReader(c)
	w := func(lines ...string) { fmt.Fprint(c, strings.Join(lines, "")) }
	w("220 mx1.example.com ESMTP\r\n")
	secure := false
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		prefix := ""
		if secure {
			prefix = "[tls] "
		}
		s.note(prefix + line)
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" && !secure:
			w("250-mx1.example.com\r\n", "250-SIZE 10\r\n", "250 STARTTLS\r\n")
		case verb == "EHLO":
			w("250-mx1.example.com\r\n", fmt.Sprintf("250-SIZE %d\r\n", maxAfterTLS), "250-STARTTLS\r\n", "250 8BITMIME\r\n")
		case verb == "STARTTLS" && secure:
			w("503 5.5.1 TLS already active\r\n")
		case verb == "STARTTLS":
			w("220 2.0.0 ready\r\n")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			c, rd, secure = tc, bufio.NewReader(tc), true
		case verb == "MAIL":
			w("250 2.1.0 ok\r\n")
		case verb == "RCPT":
			w("250 2.1.5 ok\r\n")
		case verb == "DATA":
			w("354 go ahead\r\n")
			for {
				l, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			s.got = true
			s.mu.Unlock()
			w("250 2.0.0 queued\r\n")
		case verb == "QUIT":
			w("221 2.0.0 bye\r\n")
			return
		default:
			w("250 2.0.0 ok\r\n")
		}
	}
}

// RFC 3207 Section 4.2: after STARTTLS the client forgets the first EHLO, says EHLO again and uses only the
// new answer (SIZE grows from 10 to 100000000), and never sends STARTTLS a second time.
func TestEHLOAgainAfterSTARTTLS_STS81(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	srv := newScriptedMX(t, h.n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	ip, err := h.n.AllocIP()
	if err != nil {
		t.Fatal(err)
	}
	h.n.DNS.AddMX("example.com", "mx1.example.com", 10)
	h.n.DNS.AddA("mx1.example.com", ip)
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	h.d.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !strings.HasPrefix(addr, ip.String()+":") {
			return nil, errors.New("unexpected dial to " + addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.ln.Addr().String())
	}
	j := job("m1", "bob@example.com")
	j.Size = 1 << 20 // 1 MiB: over the pre-TLS SIZE, under the post-TLS one
	r := one(t, h.deliver("example.com", j))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "verified") {
		t.Fatalf("result = %+v, want verified delivery", r)
	}
	srv.mu.Lock()
	log, got := append([]string(nil), srv.log...), srv.got
	srv.mu.Unlock()
	if !got {
		t.Fatalf("no message accepted; commands: %q", log)
	}
	var ehloPlain, ehloTLS, starttls int
	mailAfterTLS := false
	for _, l := range log {
		u := strings.ToUpper(l)
		switch {
		case strings.HasPrefix(u, "EHLO"):
			ehloPlain++
		case strings.HasPrefix(u, "[TLS] EHLO"):
			ehloTLS++
		case strings.Contains(u, "STARTTLS"):
			starttls++
		case strings.HasPrefix(u, "[TLS] MAIL FROM:"):
			mailAfterTLS = ehloTLS == 1
		case strings.HasPrefix(u, "MAIL"):
			t.Errorf("MAIL sent before TLS: %q", l)
		}
	}
	if ehloPlain != 1 || ehloTLS != 1 || starttls != 1 || !mailAfterTLS {
		t.Errorf("commands %q: want one EHLO before and one after TLS, one STARTTLS, MAIL after the new EHLO", log)
	}
}
