package delivery_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

const authSecret = "s3cret-Pw!"

// relay starts a smart host for corp.test that requires AUTH as gw / authSecret, and routes corp.test to it.
func (h *harness) relay(o simnet.MXOptions, r delivery.Route) *simnet.Receiver {
	h.t.Helper()
	o.Users = map[string]string{"gw": authSecret}
	rcv, err := h.n.AddSMTPHost("relay.corp.test", o)
	if err != nil {
		h.t.Fatal(err)
	}
	r.Domains = []string{"corp.test"}
	if r.Hosts == nil {
		r.Hosts = []string{"relay.corp.test"}
	}
	if r.Level == "" {
		r.Level = tlspolicy.LevelOpportunistic
	}
	h.routes = []delivery.Route{r}
	return rcv
}

// noSecret fails when a result carries the password in any form a log line could.
func noSecret(t *testing.T, rs []queue.Result) {
	t.Helper()
	forms := []string{authSecret, base64.StdEncoding.EncodeToString([]byte(authSecret)),
		base64.StdEncoding.EncodeToString([]byte("\x00gw\x00" + authSecret))}
	for _, r := range rs {
		line := fmt.Sprintf("%+v", r)
		for _, f := range forms {
			if strings.Contains(line, f) {
				t.Errorf("the AUTH secret appears in a result: %s", line)
			}
		}
	}
}

// TestRouteAuthOverVerifiedTLS: with auth_user set, AUTH PLAIN is sent once the relay's certificate is
// verified, and the relay takes the message.
func TestRouteAuthOverVerifiedTLS(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	relay := h.relay(simnet.MXOptions{}, delivery.Route{AuthUser: "gw", AuthPassword: authSecret})
	rs := h.deliver("corp.test", job("m1", "bob@corp.test"))
	noSecret(t, rs)
	r := one(t, rs)
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "verified") {
		t.Fatalf("result = %+v, want delivered over verified TLS", r)
	}
	m := relay.Messages()
	if len(m) != 1 || m[0].AuthUser != "gw" || m[0].AuthMech != "PLAIN" || !m[0].TLS {
		t.Fatalf("relay got %+v, want one message after AUTH PLAIN as gw over TLS", m)
	}
}

// TestRouteAuthLoginWhenPlainNotOffered: a relay that offers only LOGIN gets LOGIN.
func TestRouteAuthLoginWhenPlainNotOffered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	relay := h.relay(simnet.MXOptions{AuthMechanisms: []string{"LOGIN"}}, delivery.Route{AuthUser: "gw", AuthPassword: authSecret})
	rs := h.deliver("corp.test", job("m1", "bob@corp.test"))
	noSecret(t, rs)
	if r := one(t, rs); r.Outcome != queue.Delivered {
		t.Fatalf("result = %+v, want delivered", r)
	}
	if m := relay.Messages(); len(m) != 1 || m[0].AuthMech != "LOGIN" {
		t.Fatalf("relay got %+v, want one message after AUTH LOGIN", m)
	}
}

// TestRouteAuthNeedsVerifiedTLS: by default AUTH waits for a verified certificate: over unverified TLS or
// in clear text the password is not sent and the mail is deferred; the route can explicitly accept less.
func TestRouteAuthNeedsVerifiedTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     func(h *harness) simnet.MXOptions
		min      tlspolicy.Level
		wantSent bool
		wantTLS  string
	}{
		{"unverified TLS, default", func(h *harness) simnet.MXOptions {
			return simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"relay.corp.test"}})}
		}, "", false, ""},
		{"clear text, required", func(*harness) simnet.MXOptions { return simnet.MXOptions{STARTTLS: simnet.NotOffered} },
			tlspolicy.LevelRequired, false, ""},
		{"unverified TLS, required", func(h *harness) simnet.MXOptions {
			return simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{DNSNames: []string{"relay.corp.test"}})}
		}, tlspolicy.LevelRequired, true, "unverified"},
		{"clear text, none", func(*harness) simnet.MXOptions { return simnet.MXOptions{STARTTLS: simnet.NotOffered} },
			tlspolicy.LevelNone, true, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			relay := h.relay(tt.opts(h), delivery.Route{AuthUser: "gw", AuthPassword: authSecret, AuthMinTLS: tt.min})
			rs := h.deliver("corp.test", job("m1", "bob@corp.test"))
			noSecret(t, rs)
			r := one(t, rs)
			if !tt.wantSent {
				if r.Outcome != queue.Deferred || r.Enhanced != "4.7.0" || !strings.Contains(r.Text, "AUTH not sent") {
					t.Fatalf("result = %+v, want deferred 4.7.0 \"AUTH not sent\"", r)
				}
				if n := relay.AuthAttempts(); n != 0 {
					t.Fatalf("the relay saw %d AUTH commands, want none", n)
				}
				return
			}
			if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, tt.wantTLS) {
				t.Fatalf("result = %+v, want delivered with TLS %q", r, tt.wantTLS)
			}
			if m := relay.Messages(); len(m) != 1 || m[0].AuthUser != "gw" {
				t.Fatalf("relay got %+v, want one authenticated message", m)
			}
		})
	}
}

// TestRouteAuthRejectedDefers: rejected credentials defer the mail (a fix of ours lets it through) and the
// password appears in no outcome.
func TestRouteAuthRejectedDefers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	relay := h.relay(simnet.MXOptions{}, delivery.Route{AuthUser: "gw", AuthPassword: "wrong-" + authSecret})
	rs := h.deliver("corp.test", job("m1", "bob@corp.test"))
	for _, r := range rs {
		if strings.Contains(fmt.Sprintf("%+v", r), "wrong-"+authSecret) {
			t.Errorf("the AUTH secret appears in a result: %+v", r)
		}
	}
	r := one(t, rs)
	if r.Outcome != queue.Deferred || r.Code != 535 || !strings.Contains(r.Text, "AUTH as gw") {
		t.Fatalf("result = %+v, want deferred with the relay's 535", r)
	}
	if len(relay.Messages()) != 0 || relay.AuthAttempts() != 1 {
		t.Fatalf("relay: %d messages, %d AUTH attempts; want 0 and 1", len(relay.Messages()), relay.AuthAttempts())
	}
}

// TestRouteHostIPLiteral: a route host given as an IP address (with a port) is dialled as it is, without a
// DNS lookup, and under required-verify its certificate must name that address.
func TestRouteHostIPLiteral(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	relay := h.relay(simnet.MXOptions{NoDNS: true}, delivery.Route{AuthUser: "gw", AuthPassword: authSecret, Level: tlspolicy.LevelRequiredVerify})
	ap := addrPort(t, relay)
	h.routes[0].Hosts = []string{ap.String()}
	r := one(t, h.deliver("corp.test", job("m1", "bob@corp.test")))
	if r.Outcome != queue.Delivered || !strings.HasPrefix(r.TLS, "verified") || r.RemoteMTA != ap.Addr().String() {
		t.Fatalf("result = %+v, want delivered over verified TLS to %s", r, ap.Addr())
	}
	if m := relay.Messages(); len(m) != 1 || m[0].AuthUser != "gw" {
		t.Fatalf("relay got %+v, want one authenticated message", m)
	}

	// The same address with a certificate that names only the host name: no IP SAN, no delivery.
	named, err := h.n.AddSMTPHost("named.corp.test", simnet.MXOptions{NoDNS: true,
		Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"named.corp.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	h.routes = []delivery.Route{{Domains: []string{"corp.test"}, Hosts: []string{named.IP().String()},
		Port: int(ap.Port()), Level: tlspolicy.LevelRequiredVerify}}
	r = one(t, h.deliver("corp.test", job("m2", "bob@corp.test")))
	if r.Outcome != queue.Deferred || r.ResultType != "certificate-host-mismatch" || len(named.Messages()) != 0 {
		t.Fatalf("result = %+v, want deferred certificate-host-mismatch and nothing sent", r)
	}
	if !strings.Contains(r.Text, named.IP().String()) {
		t.Errorf("text %q does not name the address the certificate lacks", r.Text)
	}
}

// TestRouteHostIPv6Literal: "[::1]:port" is dialled at ::1 on that port, not looked up.
func TestRouteHostIPv6Literal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var dialled []string
	h.d.Dial = func(_ context.Context, _, addr string) (net.Conn, error) {
		dialled = append(dialled, addr)
		return nil, errors.New("refused in this test")
	}
	h.routes = []delivery.Route{{Domains: []string{"corp.test"}, Hosts: []string{"[::1]:2526", "2001:db8::25"}, Port: 2525}}
	r := one(t, h.deliver("corp.test", job("m1", "bob@corp.test")))
	if r.Outcome != queue.Deferred || strings.Contains(r.Text, "no address") {
		t.Fatalf("result = %+v, want a connection failure, not a lookup failure", r)
	}
	want := []string{"[::1]:2526", "[2001:db8::25]:2525"}
	if fmt.Sprint(dialled) != fmt.Sprint(want) {
		t.Fatalf("dialled %v, want %v", dialled, want)
	}
}
