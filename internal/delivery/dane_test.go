package delivery_test

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// daneHarness is the F1 fixture of the checklist: example.com signed, Sender.EnableDANE on, and receivers
// with certificates from EvilRoot (which PKIX does not trust), so only DANE can authenticate them.
func daneHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.settings.EnableDANE = true
	h.n.DNS.SetDNSSEC("example.com", simnet.Secure)
	return h
}

func (h *harness) evilMX(host string, pref uint16, o simnet.MXOptions) *simnet.Receiver {
	h.t.Helper()
	if o.Cert == nil {
		o.Cert = h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{host}})
	}
	return h.mx("example.com", host, pref, o)
}

// tlsa publishes the 3 1 1 record of r's certificate (or a corrupted one).
func (h *harness) tlsa(r *simnet.Receiver, usage, selector, mt uint8, match bool) dnsx.TLSA {
	h.t.Helper()
	cert := r.Leaf()
	if usage == 2 {
		cert = h.n.EvilCA.Cert
	}
	t := h.n.DNS.AddDANE(r.Host(), h.n.SMTPPort, usage, selector, mt, cert)
	if !match {
		h.n.DNS.Remove("_25._tcp."+r.Host(), dns.TypeTLSA)
		t.Data = append([]byte(nil), t.Data...)
		t.Data[0] ^= 0xff
		h.n.DNS.AddTLSA("_25._tcp."+r.Host(), t)
	}
	return t
}

// sessionsFor returns the recorded sessions whose policy domain is domain.
func (r *recorder) sessionsFor(domain string) []tlsrpt.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []tlsrpt.Session
	for _, s := range r.sessions {
		if s.Policy.Domain == domain {
			out = append(out, s)
		}
	}
	return out
}

// TestDANEEEAuthenticates_DANE11_DANE25_DANE28: a matching DANE-EE record authenticates a certificate PKIX
// does not trust; SNI is the TLSA base domain; the session is reported under policy-type tlsa with the
// records as policy-string, for the base domain.
func TestDANEEEAuthenticates_DANE11_DANE25_DANE28(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	rec := h.tlsa(mx1, 3, 1, 1, true)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" || !strings.HasPrefix(r.TLS, "verified TLS") || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("result = %+v, want delivered by mx1 over DANE-verified TLS", r)
	}
	if m := mx1.Messages(); len(m) != 1 || m[0].SNI != "mx1.example.com" {
		t.Fatalf("mx1 got %+v, want one message with SNI mx1.example.com", m)
	}
	s := h.rec.sessionsFor("mx1.example.com")
	want := tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{strings.ToUpper("3 1 1 " + hexs(rec.Data))}, Domain: "mx1.example.com"}
	if len(s) != 1 || !s[0].Success || s[0].Policy.Type != want.Type || len(s[0].Policy.String) != 1 || s[0].Policy.String[0] != want.String[0] {
		t.Errorf("recorded %+v, want one success under %+v", s, want)
	}
}

// TestDANETAAuthenticates_DANE19_DANE20: a DANE-TA record for the issuing CA, with a leaf naming only the
// next-hop domain (a reference identifier with a secure MX RRset).
func TestDANETAAuthenticates_DANE19_DANE20(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{Cert: nil})
	mx1.SetCert(h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"example.com"}}))
	h.tlsa(mx1, 2, 0, 1, true)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("result = %+v, want delivered by mx1 over DANE-TA", r)
	}
}

// TestTLSAMismatchNotSent_DANE22_DANE27_STS89: a secure TLSA RRset that does not match keeps mail from mx1,
// even with a certificate PKIX trusts and an enforced MTA-STS policy listing mx1; mx2, whose record matches,
// gets it. The failure is reported as tlsa-invalid for mx1's base domain.
func TestTLSAMismatchNotSent_DANE22_DANE27_STS89(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	h.sts("example.com", "20260101", pEnforce)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
	h.tlsa(mx1, 3, 1, 1, false)
	h.tlsa(mx2, 3, 1, 1, true)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" {
		t.Fatalf("result = %+v, want delivered by mx2", r)
	}
	if n := len(mx1.Messages()); n != 0 {
		t.Errorf("mx1 got %d messages despite a TLSA mismatch", n)
	}
	s := h.rec.sessionsFor("mx1.example.com")
	if len(s) != 1 || s[0].Failure == nil || s[0].Failure.ResultType != tlsrpt.ResultTLSAInvalid || s[0].Policy.Type != tlsrpt.PolicyTLSA {
		t.Errorf("mx1 sessions %+v, want one tlsa-invalid under policy tlsa", s)
	}
}

// TestDANEOverFailingMTASTS_STS90: DANE authenticates mx1 although its certificate fails the enforced
// MTA-STS policy's PKIX check: a secure usable TLSA RRset takes precedence (RFC 8461 Section 2).
func TestDANEOverFailingMTASTS_STS90(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	h.sts("example.com", "20260101", pEnforce)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	h.tlsa(mx1, 3, 1, 1, true)
	// An MX host outside the enforced policy's patterns is still skipped, DANE or not (as mox does).
	mx0 := h.evilMX("mx0.example.com", 5, simnet.MXOptions{})
	h.tlsa(mx0, 3, 1, 1, true)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("result = %+v, want delivered by mx1 over DANE", r)
	}
	if n := mx0.Connections(); n != 0 {
		t.Errorf("mx0, not in the enforced policy, got %d connections", n)
	}
}

// TestSecureTLSARequiresTLS_DANE11: mx1 has secure TLSA records but offers no STARTTLS: no plain text.
func TestSecureTLSARequiresTLS_DANE11(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.NotOffered})
	h.tlsa(mx1, 3, 1, 1, true)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || len(mx1.Messages()) != 0 {
		t.Fatalf("result = %+v, mx1 got %d; want deferred and nothing in plain text", r, len(mx1.Messages()))
	}
	s := h.rec.sessionsFor("mx1.example.com")
	if len(s) != 1 || s[0].Failure == nil || s[0].Failure.ResultType != tlsrpt.ResultSTARTTLSNotSupported || s[0].Policy.Type != tlsrpt.PolicyTLSA {
		t.Errorf("sessions %+v, want starttls-not-supported under policy tlsa", s)
	}
}

// TestUnusableTLSAStillRequiresTLS_DANE12: an RRset of unusable records asks for TLS without authentication.
func TestUnusableTLSAStillRequiresTLS_DANE12(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	h.n.DNS.AddTLSA("_25._tcp.mx1.example.com", dnsx.TLSA{Usage: 4, Selector: 1, MatchingType: 1, Data: make([]byte, 32)})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "unverified TLS") {
		t.Fatalf("result = %+v, want delivered over unauthenticated TLS", r)
	}
	if f := h.rec.failures(); len(f) != 1 || f[0] != tlsrpt.ResultTLSAInvalid {
		t.Errorf("failures %v, want [tlsa-invalid]", f)
	}
	mx1.SetMode(simnet.NotOffered)
	r = one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Deferred || len(mx1.Messages()) != 1 {
		t.Fatalf("without STARTTLS: result = %+v, want deferred (never plain text)", r)
	}
}

// TestDANEOnlyUnusableTLSARefusesHost_DANE16_DANE12: under dane-only a secure RRset with no usable record
// cannot authenticate the host: it is never connected to (no unauthenticated TLS), tlsa-invalid is
// reported, and the next MX with a usable record gets the mail.
func TestDANEOnlyUnusableTLSARefusesHost_DANE16_DANE12(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	setRule(h, "example.com", tlspolicy.LevelDANEOnly)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	h.n.DNS.AddTLSA("_25._tcp.mx1.example.com", dnsx.TLSA{Usage: 4, Selector: 1, MatchingType: 1, Data: make([]byte, 32)})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || mx1.Connections() != 0 || r.ResultType != tlsrpt.ResultTLSAInvalid {
		t.Fatalf("result = %+v, mx1 connections %d; want deferred (tlsa-invalid) with no connection", r, mx1.Connections())
	}
	s := h.rec.sessionsFor("mx1.example.com")
	if len(s) != 1 || s[0].Failure == nil || s[0].Failure.ResultType != tlsrpt.ResultTLSAInvalid || s[0].Policy.Type != tlsrpt.PolicyTLSA {
		t.Errorf("mx1 sessions %+v, want one tlsa-invalid under policy tlsa", s)
	}

	mx2 := h.evilMX("mx2.example.com", 20, simnet.MXOptions{})
	h.tlsa(mx2, 3, 1, 1, true)
	r = one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || !strings.HasSuffix(r.TLS, "(DANE)") || mx1.Connections() != 0 {
		t.Fatalf("result = %+v, mx1 connections %d; want DANE delivery to mx2 and none to mx1", r, mx1.Connections())
	}
}

// TestBogusTLSAMakesHostUnusable_DANE4: a bogus TLSA answer: mx1 is never connected to, mx2 gets the mail,
// and dnssec-invalid is reported; a SERVFAIL does the same without a report; with no host left, deferral.
func TestBogusTLSAMakesHostUnusable_DANE4(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	mx2 := h.evilMX("mx2.example.com", 20, simnet.MXOptions{})
	h.tlsa(mx1, 3, 1, 1, true)
	h.tlsa(mx2, 3, 1, 1, true)
	h.n.DNS.SetDNSSEC("_25._tcp.mx1.example.com", simnet.Bogus)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || mx1.Connections() != 0 {
		t.Fatalf("result = %+v, mx1 connections %d; want mx2 and no connection to mx1", r, mx1.Connections())
	}
	s := h.rec.sessionsFor("mx1.example.com")
	if len(s) != 1 || s[0].Failure == nil || s[0].Failure.ResultType != tlsrpt.ResultDNSSECInvalid {
		t.Errorf("mx1 sessions %+v, want one dnssec-invalid", s)
	}

	h.n.DNS.SetDNSSEC("_25._tcp.mx1.example.com", simnet.Secure)
	h.n.DNS.SetFailure("_25._tcp.mx1.example.com", dns.TypeTLSA, simnet.ServFail)
	h.n.DNS.SetFailure("_25._tcp.mx2.example.com", dns.TypeTLSA, simnet.ServFail)
	r = one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Deferred || mx1.Connections() != 0 || len(mx2.Messages()) != 1 {
		t.Fatalf("both TLSA lookups failing: result = %+v, want deferred with no connection", r)
	}
}

// TestBogusMXDefers_DANE2: a bogus MX RRset defers the destination, connects nowhere, and is reported.
func TestBogusMXDefers_DANE2(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	h.n.DNS.SetDNSSEC("example.com", simnet.Bogus)
	h.n.DNS.SetDNSSEC("mx1.example.com", simnet.Secure)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || mx1.Connections() != 0 || r.ResultType != tlsrpt.ResultDNSSECInvalid {
		t.Fatalf("result = %+v, want deferred (dnssec-invalid) with no connection", r)
	}
	if f := h.rec.failures(); len(f) != 1 || f[0] != tlsrpt.ResultDNSSECInvalid {
		t.Errorf("failures %v, want [dnssec-invalid]", f)
	}
}

// TestAddressFailureTriesNextMX_DANE3: one MX host's address lookup fails; the next one is used.
func TestAddressFailureTriesNextMX_DANE3(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	mx2 := h.evilMX("mx2.example.com", 20, simnet.MXOptions{})
	h.tlsa(mx2, 3, 1, 1, true)
	h.n.DNS.SetFailure("mx1.example.com", dns.TypeANY, simnet.ServFail)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" {
		t.Fatalf("result = %+v, want mx2", r)
	}
}

// TestUntrustedResolverNoDANE_DANE1: the AD bit of a resolver not listed as validating is ignored, so a
// mismatching TLSA record changes nothing (DANE does not apply) and mail goes over opportunistic TLS.
func TestUntrustedResolverNoDANE_DANE1(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	h.d.Resolver = &dnsx.Client{Servers: []string{h.n.DNSAddr}, Timeout: 10 * time.Second, Validating: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	h.tlsa(mx1, 3, 1, 1, false)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "unverified") {
		t.Fatalf("result = %+v, want opportunistic delivery (no DANE from an untrusted resolver)", r)
	}
	if h.n.DNS.Queried("_25._tcp.mx1.example.com", dns.TypeTLSA) {
		t.Error("TLSA was looked up although the MX RRset cannot be secure")
	}
}

// TestInsecureMXNoDANE_DANE7_DANE13: with an unsigned recipient zone DANE does not apply even where the MX
// host's own zone is signed (we do not take the MAY), and an insecure TLSA RRset changes nothing: plain
// text is still allowed without STARTTLS.
func TestInsecureMXNoDANE_DANE7_DANE13(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.EnableDANE = true
	h.n.DNS.SetDNSSEC("mx.hoster.test", simnet.Secure)
	mx1, err := h.n.AddMX(simnet.MXOptions{Domain: "plain.test", Host: "mx.hoster.test", Pref: 10, STARTTLS: simnet.NotOffered})
	if err != nil {
		t.Fatal(err)
	}
	h.tlsa(mx1, 3, 1, 1, false)
	r := one(t, h.deliver("plain.test", job("m1", "bob@plain.test")))
	if r.Outcome != queue.Delivered || r.TLS != "none" {
		t.Fatalf("result = %+v, want plain-text delivery", r)
	}
	// DANE-13: secure zone, insecure TLSA RRset.
	h2 := daneHarness(t)
	mx := h2.evilMX("mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.NotOffered})
	h2.tlsa(mx, 3, 1, 1, false)
	h2.n.DNS.SetDNSSEC("_25._tcp.mx1.example.com", simnet.Insecure)
	if r := one(t, h2.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered || r.TLS != "none" {
		t.Fatalf("insecure TLSA: result = %+v, want plain-text delivery", r)
	}
}

// TestNoTLSAIsNotAnError_DANE5: secure denial of TLSA: opportunistic TLS, no report of a failure.
func TestNoTLSAIsNotAnError_DANE5(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "unverified") {
		t.Fatalf("result = %+v, want opportunistic delivery", r)
	}
	if f := h.rec.failures(); len(f) != 0 {
		t.Errorf("failures %v, want none", f)
	}
}

// TestMXPreferenceBeforeSecurity_DANE15: the better MX without TLSA is tried before a worse one with TLSA.
func TestMXPreferenceBeforeSecurity_DANE15(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	plain := h.evilMX("plain.example.com", 10, simnet.MXOptions{})
	secure := h.evilMX("dane.example.com", 20, simnet.MXOptions{})
	h.tlsa(secure, 3, 1, 1, true)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "plain.example.com" || len(plain.Messages()) != 1 {
		t.Fatalf("result = %+v, want plain.example.com first", r)
	}
}

// TestDANEOnly_DANE16: mandatory DANE defers (dane-required) with an insecure MX RRset or without secure
// TLSA records, and delivers where DANE authenticates; the rule applies whatever Sender.EnableDANE says.
func TestDANEOnly_DANE16(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	setRule(h, "example.com", tlspolicy.LevelDANEOnly)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || r.ResultType != tlsrpt.ResultDANERequired || mx1.Connections() != 0 {
		t.Fatalf("insecure MX: result = %+v, want deferred dane-required, no connection", r)
	}
	h.n.DNS.SetDNSSEC("example.com", simnet.Secure)
	r = one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Deferred || r.ResultType != tlsrpt.ResultDANERequired || mx1.Connections() != 0 {
		t.Fatalf("no TLSA: result = %+v, want deferred dane-required, no connection", r)
	}
	h.tlsa(mx1, 3, 1, 1, true)
	if r := one(t, h.deliver("example.com", job("m3", "bob@example.com"))); r.Outcome != queue.Delivered || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("with TLSA: result = %+v, want DANE delivery", r)
	}
	for _, f := range h.rec.failures() {
		if f != tlsrpt.ResultDANERequired {
			t.Errorf("failure %s recorded, want only dane-required", f)
		}
	}
}

// TestDANEForRouteUsesPortAndNoLiteral_DANE9_DANE14: a static route with level dane looks up TLSA at the
// route's port; an address-literal destination never looks up TLSA.
func TestDANEForRouteUsesPortAndNoLiteral_DANE9_DANE14(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.n.DNS.SetDNSSEC("relay.test", simnet.Secure)
	relay, err := h.n.AddSMTPHost("relay.test", simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"relay.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	h.n.DNS.AddDANE("relay.test", h.n.SMTPPort, 3, 1, 1, relay.Leaf())
	h.routes = []delivery.Route{{Domains: []string{"routed.test"}, Hosts: []string{"relay.test"}, Level: tlspolicy.LevelDANE}}
	r := one(t, h.deliver("routed.test", job("m1", "bob@routed.test")))
	if r.Outcome != queue.Delivered || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("route: result = %+v, want DANE delivery to the relay", r)
	}
	if !h.n.DNS.Queried("_25._tcp.relay.test", dns.TypeTLSA) {
		t.Errorf("queries %v, want _%d._tcp.relay.test", h.n.DNS.Queries(), h.n.SMTPPort)
	}

	h.settings.EnableDANE = true
	h.n.DNS.ResetQueries()
	lit := "[" + relay.IP().String() + "]"
	if r := one(t, h.deliver(lit, job("m2", "bob@"+lit))); r.Outcome != queue.Delivered {
		t.Fatalf("literal: result = %+v", r)
	}
	for _, q := range h.n.DNS.Queries() {
		if q.Type == dns.TypeTLSA {
			t.Errorf("TLSA query %v for an address literal", q)
		}
	}
}

// TestSNIIsExpandedBaseDomain_DANE25_DANE10: with mx1 a secure CNAME of mx.hoster.test and the TLSA records
// at the expanded name, SNI and the report's policy domain are mx.hoster.test.
func TestSNIIsExpandedBaseDomain_DANE25_DANE10(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	h.n.DNS.SetDNSSEC("hoster.test", simnet.Secure)
	r1, err := h.n.AddSMTPHost("mx.hoster.test", simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx.hoster.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	h.n.DNS.AddMX("example.com", "mx1.example.com", 10)
	h.n.DNS.AddCNAME("mx1.example.com", "mx.hoster.test")
	h.n.DNS.AddDANE("mx.hoster.test", h.n.SMTPPort, 3, 1, 1, r1.Leaf())
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("result = %+v, want DANE delivery", r)
	}
	if m := r1.Messages(); len(m) != 1 || m[0].SNI != "mx.hoster.test" {
		t.Fatalf("got %+v, want SNI mx.hoster.test", m)
	}
	if s := h.rec.sessionsFor("mx.hoster.test"); len(s) != 1 || !s[0].Success {
		t.Errorf("sessions for mx.hoster.test: %+v", s)
	}
}

// TestRequireTLSOverDANE_REQ6: DANE authenticates a REQUIRETLS delivery as PKIX would.
func TestRequireTLSOverDANE_REQ6(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{RequireTLS: true})
	h.tlsa(mx1, 3, 1, 1, true)
	j := job("m1", "bob@example.com")
	j.RequireTLS = true
	r := one(t, h.deliver("example.com", j))
	if r.Outcome != queue.Delivered || !strings.HasSuffix(r.TLS, "(DANE)") {
		t.Fatalf("result = %+v, want DANE-authenticated REQUIRETLS delivery", r)
	}
	if m := mx1.Messages(); len(m) != 1 || !m[0].MailOpts.RequireTLS {
		t.Errorf("mx1 got %+v, want MAIL FROM with REQUIRETLS", m)
	}
}

// TestTLSRequiredNoIgnoresDANE_REQ11: TLS-Required: No relaxes DANE as it relaxes MTA-STS: a TLSA mismatch
// does not stop delivery.
func TestTLSRequiredNoIgnoresDANE_REQ11(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	h.tlsa(mx1, 3, 1, 1, false)
	j := job("m1", "bob@example.com")
	j.TLSOptional = true
	r := one(t, h.deliver("example.com", j))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" {
		t.Fatalf("result = %+v, want delivered by mx1", r)
	}
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func setRule(h *harness, domain string, l tlspolicy.Level) {
	h.settings.Rules[domain] = tlspolicy.Rule{Level: l}
}

// TestKeptSessionNotReusedAfterTLSAChange: a session kept for reuse was authenticated against the TLSA
// records of its time; once they change, the next batch opens a new session and checks again.
func TestKeptSessionNotReusedAfterTLSAChange(t *testing.T) {
	t.Parallel()
	h := daneHarness(t)
	h.d.IdleTimeout = time.Minute
	t.Cleanup(h.d.Close)
	mx1 := h.evilMX("mx1.example.com", 10, simnet.MXOptions{})
	h.tlsa(mx1, 3, 1, 1, true)
	if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered {
		t.Fatalf("first batch: %+v", r)
	}
	h.n.DNS.Remove("_25._tcp.mx1.example.com", dns.TypeTLSA)
	h.tlsa(mx1, 3, 1, 1, false)
	if r := one(t, h.deliver("example.com", job("m2", "bob@example.com"))); r.Outcome != queue.Deferred || r.ResultType != tlsrpt.ResultTLSAInvalid {
		t.Fatalf("after the TLSA change: %+v, want deferred tlsa-invalid", r)
	}
	if n := len(mx1.Messages()); n != 1 {
		t.Errorf("mx1 got %d messages, want 1", n)
	}
}
