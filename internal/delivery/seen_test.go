package delivery_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// events collects the delivery events of a harness.
func events(h *harness) func() []delivery.Event {
	var mu sync.Mutex
	var evs []delivery.Event
	h.d.Events = func(ev delivery.Event) {
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	}
	return func() []delivery.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]delivery.Event(nil), evs...)
	}
}

// Failures are visible whatever the mode: a delivered result carries the TLS failure its session saw, and
// its event says whether the plan enforced it.
func TestDeliveredResultCarriesFailureSeen(t *testing.T) {
	t.Parallel()
	untrusted := func(h *harness) *simnet.Receiver {
		return h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	}
	tests := []struct {
		name       string
		setup      func(h *harness) *simnet.Receiver
		policy     string
		wantType   tlsrpt.ResultType
		wantTLS    string
		wantReport bool // the failure is also recorded for TLS reports
	}{
		{"testing mode, untrusted certificate", untrusted, pTesting, tlsrpt.ResultCertificateNotTrusted, "unverified", true},
		{"testing mode, unlisted MX", func(h *harness) *simnet.Receiver {
			return h.mx("example.com", "other.test", 10, simnet.MXOptions{})
		}, pTesting, tlsrpt.ResultValidationFailure, "verified", true},
		{"opportunistic, STARTTLS not offered", func(h *harness) *simnet.Receiver {
			return h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.NotOffered})
		}, "", tlsrpt.ResultSTARTTLSNotSupported, "none", true},
		// Without a policy an unverifiable certificate is not a failure to report (RFC 8460 Section 4.3),
		// but it would fail under enforce, so the result still shows it.
		{"opportunistic, untrusted certificate", untrusted, "", tlsrpt.ResultCertificateNotTrusted, "unverified", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			evs := events(h)
			mx := tc.setup(h)
			if tc.policy != "" {
				h.sts("example.com", "1", tc.policy)
			}
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			if r.Outcome != queue.Delivered || len(mx.Messages()) != 1 {
				t.Fatalf("result = %+v, want delivered", r)
			}
			if r.ResultType != tc.wantType || !strings.HasPrefix(r.TLS, tc.wantTLS) {
				t.Errorf("result type %q over %q, want %q over %s...", r.ResultType, r.TLS, tc.wantType, tc.wantTLS)
			}
			ev := evs()
			if len(ev) != 1 || ev[0].Result.ResultType != tc.wantType || ev[0].Enforced || ev[0].Session == 0 {
				t.Errorf("events = %+v, want one unenforced event with the failure and a session number", ev)
			}
			if got := len(h.rec.failures()) > 0; got != tc.wantReport {
				t.Errorf("failure recorded for TLS reports: %v, want %v", got, tc.wantReport)
			}
		})
	}
}

// An enforced failure's event says so; a clean delivery carries no failure.
func TestEventEnforcedComesFromPlan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	evs := events(h)
	h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	h.sts("example.com", "1", pEnforce)
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Deferred || r.ResultType != tlsrpt.ResultCertificateNotTrusted {
		t.Fatalf("result = %+v, want deferred with certificate-not-trusted", r)
	}
	if ev := evs(); len(ev) != 1 || !ev[0].Enforced {
		t.Errorf("events = %+v, want one enforced event", ev)
	}

	h2 := newHarness(t)
	evs2 := events(h2)
	h2.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	h2.sts("example.com", "1", pEnforce)
	r = one(t, h2.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.ResultType != "" {
		t.Fatalf("result = %+v, want a clean delivery", r)
	}
	if ev := evs2(); len(ev) != 1 || !ev[0].Enforced || ev[0].Result.ResultType != "" {
		t.Errorf("events = %+v", ev)
	}
}
