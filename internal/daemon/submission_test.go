package daemon_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
)

// writeKeyPair writes c's leaf certificate and key as PEM files in dir and returns their paths.
func writeKeyPair(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// submit sends one message on a new session with the gateway, over STARTTLS when startTLS is set.
func submit(t *testing.T, g *gw, startTLS bool, mail *smtp.MailOptions, rcpt, header string) {
	t.Helper()
	var c *smtp.Client
	var err error
	if startTLS {
		c, err = smtp.DialStartTLS(g.smtp, &tls.Config{ServerName: "gw.sim.example", RootCAs: g.n.RootPool()})
	} else {
		c, err = smtp.Dial(g.smtp)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("alice@sender.example", mail); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: alice@sender.example\r\nTo: %s\r\n%sSubject: REQ-16\r\n\r\nbody\r\n", rcpt, header)
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// RFC 8689 Section 4.3 (REQ-16): a client that requires TLS submits over STARTTLS with MAIL REQUIRETLS, and
// the gateway sends the message on with REQUIRETLS over verified TLS; a client that does not require TLS
// adds TLS-Required: No, and the gateway acts on it (an enforced MTA-STS policy no longer holds the message
// back, while the same message without the header is deferred).
func TestSubmissionRequireTLS_REQ16(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	strict, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10, RequireTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	// RFC 8689 Section 4.2.1 (REQ-5): the MX name must be authenticated; here by an enforced MTA-STS policy.
	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	if _, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n"); err != nil {
		t.Fatal(err)
	}
	bad := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.org"}})
	lax, err := n.AddMX(simnet.MXOptions{Domain: "example.org", Host: "mx1.example.org", Pref: 10, Cert: &bad})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_mta-sts.example.org", "v=STSv1; id=1")
	if _, err := n.ServeMTASTSPolicy("example.org", "version: STSv1\nmode: enforce\nmx: mx1.example.org\nmax_age: 86400\n"); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeKeyPair(t, t.TempDir(), n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: []string{"gw.sim.example"}}))
	g := startGateway(t, n, func(c *config.Config) { c.SMTP.TLSCertFile, c.SMTP.TLSKeyFile = certFile, keyFile })

	// A client that requires TLS.
	submit(t, g, true, &smtp.MailOptions{RequireTLS: true}, "bob@example.com", "")
	if ev := g.nextEvent(t, "example.com"); ev.Result.Outcome != "delivered" {
		t.Fatalf("REQUIRETLS message: %+v, want delivered", ev.Result)
	}
	got := strict.Messages()
	if len(got) != 1 || !got[0].MailOpts.RequireTLS || !got[0].TLS {
		t.Fatalf("mx1.example.com received %+v, want one message with MAIL REQUIRETLS over TLS", got)
	}

	// A client that does not: the header lets the message go despite the enforced policy.
	submit(t, g, false, nil, "carol@example.org", "")
	if ev := g.nextEvent(t, "example.org"); ev.Result.Outcome != "deferred" || ev.Result.ResultType != "certificate-not-trusted" {
		t.Fatalf("without TLS-Required: No: %+v, want deferred certificate-not-trusted", ev.Result)
	}
	submit(t, g, false, nil, "dave@example.org", "TLS-Required: No\r\n")
	if ev := g.nextEvent(t, "example.org"); ev.Result.Outcome != "delivered" {
		t.Fatalf("with TLS-Required: No: %+v, want delivered", ev.Result)
	}
	if got := lax.Messages(); len(got) != 1 || got[0].To[0] != "dave@example.org" || got[0].MailOpts.RequireTLS {
		t.Errorf("mx1.example.org received %+v, want only dave's message, without REQUIRETLS", got)
	}
}
