package delivery_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// badMX describes an MX that fails MTA-STS validation in one way.
type badMX struct {
	name string
	opts func(h *harness) simnet.MXOptions
	want tlsrpt.ResultType
	// plainInTesting: in testing mode the message goes in clear text (no TLS could be had).
	plainInTesting bool
}

func badMXCases() []badMX {
	day := 24 * time.Hour
	return []badMX{
		{"no STARTTLS STS72a", func(h *harness) simnet.MXOptions { return simnet.MXOptions{STARTTLS: simnet.NotOffered} }, tlsrpt.ResultSTARTTLSNotSupported, true},
		{"STARTTLS 454 STS72b", func(h *harness) simnet.MXOptions { return simnet.MXOptions{STARTTLS: simnet.Refuse454} }, tlsrpt.ResultSTARTTLSNotSupported, true},
		{"handshake fails STS72c", func(h *harness) simnet.MXOptions { return simnet.MXOptions{STARTTLS: simnet.HandshakeFail} }, tlsrpt.ResultValidationFailure, true},
		{"untrusted root STS73", func(h *harness) simnet.MXOptions {
			return simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})}
		}, tlsrpt.ResultCertificateNotTrusted, false},
		{"expired STS74", func(h *harness) simnet.MXOptions {
			now := time.Now()
			return simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}, NotBefore: now.Add(-2 * day), NotAfter: now.Add(-day)})}
		}, tlsrpt.ResultCertificateExpired, false},
		{"not yet valid STS74", func(h *harness) simnet.MXOptions {
			now := time.Now()
			return simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}, NotBefore: now.Add(day), NotAfter: now.Add(2 * day)})}
		}, tlsrpt.ResultCertificateNotTrusted, false},
		{"wrong name STS75", func(h *harness) simnet.MXOptions {
			return simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"mx9.example.com"}})}
		}, tlsrpt.ResultCertificateHostMismatch, false},
		{"wildcard for another level STS76", func(h *harness) simnet.MXOptions {
			return simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"*.mx1.example.com"}})}
		}, tlsrpt.ResultCertificateHostMismatch, false},
		{"CN only STS77", func(h *harness) simnet.MXOptions {
			return simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{CommonName: "mx1.example.com"})}
		}, tlsrpt.ResultCertificateHostMismatch, false},
	}
}

// Enforce mode: the failing mx1 gets nothing, mx2 (valid) gets the message, and the failure is recorded
// (STS-72..STS-77, STS-82, STS-94).
func TestEnforceSkipsFailingMX(t *testing.T) {
	t.Parallel()
	for _, tc := range badMXCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			mx1 := h.mx("example.com", "mx1.example.com", 10, tc.opts(h))
			mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
			h.sts("example.com", "20240101T000000", pEnforce)
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || !strings.HasPrefix(r.TLS, "verified") {
				t.Fatalf("result = %+v, want verified delivery by mx2", r)
			}
			if n := len(mx1.Messages()); n != 0 {
				t.Fatalf("mx1 received %d messages under enforce (NOT-SENT expected)", n)
			}
			if len(mx2.Messages()) != 1 || !mx2.Messages()[0].TLS {
				t.Fatalf("mx2 got %+v", mx2.Messages())
			}
			if r.Policy != "mta-sts enforce" {
				t.Errorf("policy = %q, want mta-sts enforce", r.Policy)
			}
			if f := h.rec.failures(); len(f) != 1 || f[0] != tc.want {
				t.Errorf("recorded failures %v, want [%s]", f, tc.want)
			}
			if s := h.rec.successes(); s != 1 {
				t.Errorf("recorded %d successful sessions, want 1 (STS-87)", s)
			}
		})
	}
}

// Enforce mode with every MX failing: nothing is sent, the message is deferred with the result type
// (STS-83), never bounced by the attempt.
func TestEnforceAllMXFailDefers_STS83(t *testing.T) {
	t.Parallel()
	for _, tc := range badMXCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			mx1 := h.mx("example.com", "mx1.example.com", 10, tc.opts(h))
			h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			if r.Outcome != queue.Deferred || r.ResultType != tc.want {
				t.Fatalf("result = %+v, want deferred with %s", r, tc.want)
			}
			if n := len(mx1.Messages()); n != 0 {
				t.Fatalf("mx1 received %d messages under enforce", n)
			}
		})
	}
}

// Testing mode: the same failures deliver anyway, and are recorded for the report (STS-85).
func TestTestingDeliversAndRecords_STS85(t *testing.T) {
	t.Parallel()
	for _, tc := range badMXCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			mx1 := h.mx("example.com", "mx1.example.com", 10, tc.opts(h))
			h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
			h.sts("example.com", "1", pTesting)
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" {
				t.Fatalf("result = %+v, want delivery by mx1 despite the failure", r)
			}
			m := mx1.Messages()
			if len(m) != 1 || m[0].TLS == tc.plainInTesting {
				t.Fatalf("mx1 got %+v, want one message with TLS=%v", m, !tc.plainInTesting)
			}
			if f := h.rec.failures(); len(f) != 1 || f[0] != tc.want {
				t.Errorf("recorded failures %v, want [%s]", f, tc.want)
			}
			for _, s := range h.rec.sessions {
				if s.Policy.Type != tlsrpt.PolicySTS || s.Policy.Domain != "example.com" {
					t.Errorf("session recorded against %+v, want sts policy for example.com", s.Policy)
				}
			}
		})
	}
}

func TestEnforceWildcardPatternAndCert_STS67_STS76(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx := h.mx("example.com", "mx1.mail.example.net", 10, simnet.MXOptions{
		Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"*.mail.example.net"}}),
	})
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: *.mail.example.net\nmax_age: 604800\n")
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "verified") || len(mx.Messages()) != 1 {
		t.Fatalf("result = %+v, want verified delivery to the wildcard-matched MX", r)
	}
}

func TestEnforceUnlistedMXNeverContacted_STS69_STS70(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	evil := h.mx("example.com", "evil.test", 5, simnet.MXOptions{})
	mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
	h.sts("example.com", "1", pEnforce)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || len(mx2.Messages()) != 1 {
		t.Fatalf("result = %+v, want delivery by mx2", r)
	}
	if evil.Connections() != 0 {
		t.Fatalf("the unlisted MX was connected to %d times", evil.Connections())
	}
	if f := h.rec.failures(); len(f) != 1 || f[0] != tlsrpt.ResultValidationFailure {
		t.Errorf("recorded %v, want [validation-failure] for the unlisted MX", f)
	}

	// With only the unlisted MX left, the message is deferred (STS-70).
	h2 := newHarness(t)
	evil2 := h2.mx("example.com", "evil.test", 10, simnet.MXOptions{})
	h2.sts("example.com", "1", pEnforce)
	r = one(t, h2.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || evil2.Connections() != 0 {
		t.Fatalf("result = %+v with %d connections, want deferred and no connection", r, evil2.Connections())
	}
}

func TestTestingUnlistedMXDelivered_STS71(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	evil := h.mx("example.com", "evil.test", 10, simnet.MXOptions{})
	h.sts("example.com", "1", pTesting)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || len(evil.Messages()) != 1 {
		t.Fatalf("result = %+v, want delivery to the unlisted MX in testing mode", r)
	}
	if f := h.rec.failures(); len(f) != 1 || f[0] != tlsrpt.ResultValidationFailure {
		t.Errorf("recorded %v, want [validation-failure]", f)
	}
}

func TestSNIAndTLSVersions_STS79_STS80(t *testing.T) {
	t.Parallel()
	for _, v := range []struct {
		name     string
		min, max uint16
	}{{"TLS1.2 only", 0x0303, 0x0303}, {"TLS1.3 only", 0x0304, 0x0304}} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			other := h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"default.test"}})
			right := h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
			mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: other, CertForSNI: map[string]*tls.Certificate{"mx1.example.com": right}, TLSMinVersion: v.min, TLSMaxVersion: v.max})
			h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			m := mx1.Messages()
			if r.Outcome != queue.Delivered || len(m) != 1 || m[0].SNI != "mx1.example.com" || m[0].TLSVersion != v.max {
				t.Fatalf("result = %+v, received %+v; want verified delivery with SNI mx1.example.com", r, m)
			}
		})
	}
}

// Policy discovery failures: with no cached policy the domain is treated as having none (STS-34), mail goes
// out opportunistically, and the failure is recorded with its result type (STS-92).
func TestPolicyFetchFailuresFallBackToNoPolicy_STS34_STS92(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(h *harness, p *simnet.PolicyHost)
		want  tlsrpt.ResultType
	}{
		{"policy host down STS36", func(h *harness, p *simnet.PolicyHost) { p.Stop() }, tlsrpt.ResultSTSPolicyFetchError},
		{"404 STS28", func(h *harness, p *simnet.PolicyHost) { p.SetStatus(http.StatusNotFound) }, tlsrpt.ResultSTSPolicyFetchError},
		{"500 STS28", func(h *harness, p *simnet.PolicyHost) { p.SetStatus(http.StatusInternalServerError) }, tlsrpt.ResultSTSPolicyFetchError},
		{"redirect STS29", func(h *harness, p *simnet.PolicyHost) {
			p.SetStatus(http.StatusMovedPermanently)
			p.SetHeader("Location", "https://mta-sts.example.com/p.txt")
		}, tlsrpt.ResultSTSPolicyFetchError},
		{"bad certificate STS25", func(h *harness, p *simnet.PolicyHost) {
			p.SetCert(h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mta-sts.example.com"}}))
		}, tlsrpt.ResultSTSWebPKIInvalid},
		{"wrong name certificate STS22", func(h *harness, p *simnet.PolicyHost) {
			p.SetCert(h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"www.example.com"}}))
		}, tlsrpt.ResultSTSWebPKIInvalid},
		{"wrong content type STS31", func(h *harness, p *simnet.PolicyHost) { p.SetContentType("text/html") }, tlsrpt.ResultSTSPolicyInvalid},
		{"oversize body STS32", func(h *harness, p *simnet.PolicyHost) {
			p.SetPolicy(pEnforce + strings.Repeat("x-pad: "+strings.Repeat("a", 100)+"\n", 700))
		}, tlsrpt.ResultSTSPolicyInvalid},
		{"syntax error STS42", func(h *harness, p *simnet.PolicyHost) {
			p.SetPolicy("mode: enforce\nmx: mx1.example.com\nmax_age: 86400\n")
		}, tlsrpt.ResultSTSPolicyInvalid},
		{"slow body STS33", func(h *harness, p *simnet.PolicyHost) { p.SetStall(true) }, tlsrpt.ResultSTSPolicyFetchError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
			p := h.sts("example.com", "1", pEnforce)
			tc.setup(h, p)
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "unverified") || len(mx1.Messages()) != 1 {
				t.Fatalf("result = %+v, want opportunistic delivery (no policy in force)", r)
			}
			f := h.rec.failures()
			if len(f) != 1 || f[0] != tc.want {
				t.Errorf("recorded failures %v, want [%s]", f, tc.want)
			}
		})
	}
}

func TestSeveralSTSRecordsMeanNoPolicy_STS12(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	p := h.sts("example.com", "1", pEnforce)
	h.n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=2")
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || len(mx1.Messages()) != 1 {
		t.Fatalf("result = %+v, want opportunistic delivery", r)
	}
	if n := len(p.Requests()); n != 0 {
		t.Errorf("%d policy fetches with two STS records, want 0", n)
	}
}

func TestPolicyIDChangeFetchesNewPolicy_STS56(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	p := h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered {
		t.Fatalf("first delivery: %+v", r)
	}
	// The domain moves to mx3 and publishes a new policy under a new id.
	h.n.DNS.Remove("example.com", 15)
	mx3 := h.mx("example.com", "mx3.example.com", 10, simnet.MXOptions{})
	p.SetPolicy("version: STSv1\nmode: enforce\nmx: mx3.example.com\nmax_age: 604800\n")
	h.n.DNS.Remove("_mta-sts.example.com", 16)
	h.n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=2")
	r := one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx3.example.com" || len(mx3.Messages()) != 1 {
		t.Fatalf("after the id change: %+v, want delivery to mx3 under the new policy", r)
	}
	if n := len(p.Requests()); n != 2 {
		t.Errorf("%d policy fetches, want 2 (one per id)", n)
	}
}

func TestCachedEnforceSurvivesTXTAndPolicyHostLoss_STS16(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	p := h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered {
		t.Fatalf("first delivery: %+v", r)
	}
	// Downgrade attempt: the TXT vanishes, the policy host goes down, the MX stops offering STARTTLS.
	h.n.DNS.Remove("_mta-sts.example.com", 16)
	p.Stop()
	mx1.SetMode(simnet.NotOffered)
	r := one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Deferred || r.ResultType != tlsrpt.ResultSTARTTLSNotSupported {
		t.Fatalf("result = %+v, want deferred starttls-not-supported under the cached enforce policy", r)
	}
	if n := len(mx1.Messages()); n != 1 {
		t.Fatalf("mx1 has %d messages, want only the first (nothing in clear text)", n)
	}
}

func TestMTASTSDisabledBySetting(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings.EnableMTASTS = false
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	p := h.sts("example.com", "1", pEnforce)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || len(mx1.Messages()) != 1 || r.Policy != "opportunistic" {
		t.Fatalf("result = %+v, want opportunistic delivery with Sender.EnableMTASTS=false", r)
	}
	if len(p.Requests()) != 0 || h.n.DNS.Queried("_mta-sts.example.com", 16) {
		t.Error("MTA-STS was looked up although Sender.EnableMTASTS is false")
	}
}

// Spec: STS-19 and DESIGN's "temporary unless proven permanent": a SERVFAIL for _mta-sts with nothing cached
// is never read as "no policy"; the attempt is deferred and the MX not contacted.
func TestSTSDiscoveryServfailDefers_STS19(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.NotOffered})
	h.sts("example.com", "1", pEnforce)
	h.n.DNS.SetFailure("_mta-sts.example.com", 16, simnet.ServFail)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || mx1.Connections() != 0 {
		t.Fatalf("result = %+v with %d connections, want deferred and no connection", r, mx1.Connections())
	}
	h.n.DNS.SetFailure("_mta-sts.example.com", 16, simnet.None)
	r = one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Deferred || r.ResultType != tlsrpt.ResultSTARTTLSNotSupported || len(mx1.Messages()) != 0 {
		t.Fatalf("after DNS recovers: %+v, want the enforce policy applied (deferred, starttls-not-supported)", r)
	}
}
