package delivery_test

import (
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

func requireTLSJob(id string) queue.Job {
	j := job(id, "bob@example.com")
	j.RequireTLS = true
	return j
}

func TestRequireTLSDeliveredWithParameter_REQ9(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{RequireTLS: true})
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	r := one(t, h.deliver("example.com", requireTLSJob("m1")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "verified") {
		t.Fatalf("result = %+v, want verified delivery", r)
	}
	m := mx1.Messages()
	if len(m) != 1 || !m[0].MailOpts.RequireTLS {
		t.Fatalf("mx1 got %+v, want MAIL FROM with REQUIRETLS", m)
	}
}

func TestRequireTLSUnauthenticatedMXFails_REQ5(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{RequireTLS: true})
	r := one(t, h.deliver("example.com", requireTLSJob("m1")))
	if r.Outcome != queue.Failed || !strings.HasPrefix(r.Enhanced, "5.7.") {
		t.Fatalf("result = %+v, want failed with 5.7.x (MX name not authenticated)", r)
	}
	if mx1.Connections() != 0 {
		t.Errorf("the unauthenticated MX was contacted %d times", mx1.Connections())
	}
}

func TestRequireTLSNotOfferedAfterSTARTTLS_REQ7_REQ8(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	r := one(t, h.deliver("example.com", requireTLSJob("m1")))
	if r.Outcome != queue.Failed || r.Enhanced != "5.7.30" {
		t.Fatalf("result = %+v, want failed 5.7.30", r)
	}
	if len(mx1.Messages()) != 0 {
		t.Error("the message was sent to an MX without REQUIRETLS")
	}
}

func TestRequireTLSUntrustedCertificateNotDelivered_REQ6(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{RequireTLS: true, Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	r := one(t, h.deliver("example.com", requireTLSJob("m1")))
	if r.Outcome == queue.Delivered || len(mx1.Messages()) != 0 {
		t.Fatalf("result = %+v, want not delivered", r)
	}
}

// TLS-Required: No (RFC 8689 Section 4.2.2): recipient policies are ignored; the message goes out even to an
// MX that fails the domain's enforce policy, over TLS when offered.
func TestTLSRequiredNoIgnoresEnforce_REQ11(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}})})
	h.sts("example.com", "1", pEnforce)
	j := job("m1", "bob@example.com")
	j.TLSOptional = true
	r := one(t, h.deliver("example.com", j))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "unverified") || len(mx1.Messages()) != 1 {
		t.Fatalf("result = %+v, want unverified delivery to mx1", r)
	}
	if len(h.rec.sessions) != 0 {
		t.Errorf("TLS-Required: No sessions were recorded for reporting: %+v", h.rec.sessions)
	}
}

// RFC 8689 Section 4.1 and 7 (REQ-15): REQUIRETLS holds for a smart host too: it must be authenticated and
// advertise REQUIRETLS after STARTTLS.
func TestRequireTLSThroughSmartHost_REQ15(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	relay, err := h.n.AddSMTPHost("relay.provider.test", simnet.MXOptions{RequireTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	h.routes = []delivery.Route{{Domains: []string{"example.com"}, Hosts: []string{"relay.provider.test"}, Level: tlspolicy.LevelOpportunistic}}
	r := one(t, h.deliver("example.com", requireTLSJob("m1")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "verified") || len(relay.Messages()) != 1 || !relay.Messages()[0].MailOpts.RequireTLS {
		t.Fatalf("valid smart host: %+v, want verified delivery with MAIL REQUIRETLS", r)
	}
	relay.SetCert(h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"relay.provider.test"}}))
	r = one(t, h.deliver("example.com", requireTLSJob("m2")))
	if r.Outcome == queue.Delivered || len(relay.Messages()) != 1 {
		t.Fatalf("untrusted smart host: %+v, want not delivered", r)
	}
}
