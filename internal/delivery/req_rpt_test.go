package delivery_test

// Requirement tests for RFC 8460 items (REQUIREMENTS.md section 2) seen from the delivery side: what each
// session records for the TLS report.

import (
	"crypto/tls"
	"testing"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// A domain without MTA-STS (or DANE) is reported under policy-type no-policy-found: a session without
// STARTTLS is a starttls-not-supported failure, a session with STARTTLS a success.
func TestNoPolicyFoundSessions_RPT24(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mode     simnet.StartTLSMode
		success  bool
		failures []tlsrpt.ResultType
	}{
		{"no STARTTLS", simnet.NotOffered, false, []tlsrpt.ResultType{tlsrpt.ResultSTARTTLSNotSupported}},
		{"STARTTLS", simnet.Offer, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: tc.mode})
			if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered {
				t.Fatalf("result = %+v, want delivered", r)
			}
			h.rec.mu.Lock()
			sessions := append([]tlsrpt.Session(nil), h.rec.sessions...)
			h.rec.mu.Unlock()
			if len(sessions) != 1 {
				t.Fatalf("recorded %d sessions, want 1: %+v", len(sessions), sessions)
			}
			s := sessions[0]
			if s.Policy.Type != tlsrpt.PolicyNoPolicyFound || s.Policy.Domain != "example.com" {
				t.Errorf("policy = %+v, want no-policy-found for example.com", s.Policy)
			}
			if s.Success != tc.success {
				t.Errorf("success = %v, want %v", s.Success, tc.success)
			}
			if f := h.rec.failures(); len(f) != len(tc.failures) || (len(f) == 1 && f[0] != tc.failures[0]) {
				t.Errorf("failures = %v, want %v", f, tc.failures)
			}
		})
	}
}

// Failure details name the MX host the sender tried (receiving-mx-hostname) and its IP (receiving-ip), and
// validation-failure entries carry a failure-reason-code.
// untrustedCert marks the table case whose certificate is issued by the harness's untrusted CA.
var untrustedCert = &tls.Certificate{}

func TestFailureDetailsHostAndReasonCode_RPT19_RPT22(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		opts     simnet.MXOptions
		wantIP   bool
		wantType tlsrpt.ResultType
	}{
		{"handshake failure", simnet.MXOptions{STARTTLS: simnet.HandshakeFail}, true, tlsrpt.ResultValidationFailure},
		{"untrusted root", simnet.MXOptions{Cert: untrustedCert}, true, tlsrpt.ResultCertificateNotTrusted},
		{"no STARTTLS", simnet.MXOptions{STARTTLS: simnet.NotOffered}, true, tlsrpt.ResultSTARTTLSNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if tc.opts.Cert == untrustedCert {
				tc.opts.Cert = h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
			}
			mx1 := h.mx("example.com", "mx1.example.com", 10, tc.opts)
			h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
			h.sts("example.com", "1", pEnforce)
			if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Delivered {
				t.Fatalf("result = %+v, want delivered by mx2", r)
			}
			h.rec.mu.Lock()
			defer h.rec.mu.Unlock()
			var f *tlsrpt.FailureDetails
			for _, s := range h.rec.sessions {
				if s.Failure != nil {
					f = s.Failure
				}
			}
			if f == nil || f.ResultType != tc.wantType {
				t.Fatalf("failure = %+v, want %s", f, tc.wantType)
			}
			if f.ReceivingMXHostname != "mx1.example.com" {
				t.Errorf("receiving-mx-hostname = %q, want mx1.example.com", f.ReceivingMXHostname)
			}
			// Spec: RPT-19: receiving-mx-helo is the name in the server's 220 greeting.
			if f.ReceivingMXHelo != "mx1.example.com" {
				t.Errorf("receiving-mx-helo = %q, want mx1.example.com (the greeting's name)", f.ReceivingMXHelo)
			}
			if tc.wantIP && f.ReceivingIP != mx1.IP().String() {
				t.Errorf("receiving-ip = %q, want %s", f.ReceivingIP, mx1.IP())
			}
			if (f.ResultType == tlsrpt.ResultValidationFailure || f.ResultType == tlsrpt.ResultCertificateNotTrusted) && f.FailureReasonCode == "" {
				t.Errorf("%s without failure-reason-code: %+v", f.ResultType, f)
			}
		})
	}
	// An unlisted MX under enforce: validation-failure with reason mx-not-in-policy (STS-71 Spec reading).
	h := newHarness(t)
	h.mx("example.com", "evil.test", 5, simnet.MXOptions{})
	h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
	h.sts("example.com", "1", pEnforce)
	one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	found := false
	for _, s := range h.rec.sessions {
		if s.Failure != nil && s.Failure.ResultType == tlsrpt.ResultValidationFailure {
			found = s.Failure.FailureReasonCode != "" && s.Failure.ReceivingMXHostname == "evil.test"
		}
	}
	if !found {
		t.Errorf("sessions %+v: want a validation-failure for evil.test with a failure-reason-code", h.rec.sessions)
	}
}
