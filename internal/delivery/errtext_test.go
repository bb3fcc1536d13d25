package delivery_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// TestFailureTextsForPeople: the text of a deferral, which the administrator reads in mxgate trace, the
// delivery log event and the DSN's Diagnostic-Code, names the host once and the cause plainly: no "dial tcp
// a:b: connect:" or "read tcp a->b:" socket noise, TLS alerts as alerts, and certificates by subject (common
// name, else first DNS name) and issuer.
func TestFailureTextsForPeople(t *testing.T) {
	t.Parallel()
	expiry := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	tests := []struct {
		name  string
		setup func(t *testing.T, h *harness) string // returns the MX's address where the text names it
		want  string
	}{
		{"connection refused", func(t *testing.T, h *harness) string {
			r := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
			r.Stop()
			return r.Addr()
		}, "connect to mx1.example.com [ADDR]: connection refused"},
		{"timeout", func(t *testing.T, h *harness) string {
			silentMX(t, h, "mx1.example.com")
			h.d.CommandTimeout = 200 * time.Millisecond
			return ""
		}, "session with mx1.example.com: timeout waiting for the server"},
		{"TLS handshake failure", func(t *testing.T, h *harness) string {
			h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{STARTTLS: simnet.HandshakeFail})
			return ""
		}, `validation-failure: TLS handshake failed: the server sent TLS alert "internal error"`},
		{"untrusted", func(t *testing.T, h *harness) string {
			h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.EvilCA, testpki.Leaf{CommonName: "mail.example.com", DNSNames: []string{"mx1.example.com"}})})
			return ""
		}, `certificate-not-trusted: certificate "mail.example.com" (issuer "simnet EvilRoot") is signed by an authority not in the trust store`},
		{"name mismatch", func(t *testing.T, h *harness) string {
			h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"other.test", "www.other.test"}})})
			return ""
		}, `certificate-host-mismatch: certificate "other.test" (issuer "simnet TestRoot") names [other.test www.other.test], not mx1.example.com`},
		{"expired", func(t *testing.T, h *harness) string {
			h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{Cert: h.cert(h.n.TrustedCA, testpki.Leaf{DNSNames: []string{"mx1.example.com"}, NotBefore: expiry.Add(-48 * time.Hour), NotAfter: expiry})})
			return ""
		}, `certificate-expired: certificate "mx1.example.com" (issuer "simnet TestRoot") expired at ` + expiry.Format(time.RFC3339)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.settings.Rules["example.com"] = tlspolicy.Rule{Level: tlspolicy.LevelRequiredVerify}
			addr := tt.setup(t, h)
			r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
			want := tt.want
			if addr != "" {
				want = strings.Replace(want, "ADDR", addr, 1)
			}
			if r.Text != want {
				t.Errorf("text = %q\nwant   %q", r.Text, want)
			}
		})
	}
}

// silentMX makes host the MX of example.com: a listener that accepts connections and never answers.
func silentMX(t *testing.T, h *harness, host string) {
	t.Helper()
	ip, err := h.n.AllocIP()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(h.n.SMTPPort)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		// The accepted connections stay open, unanswered, until the test ends.
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	h.n.DNS.AddA(host, ip)
	h.n.DNS.AddMX("example.com", host, 10)
}
