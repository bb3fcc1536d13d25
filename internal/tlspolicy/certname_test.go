package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testpki"
)

// TestCertificateErrorsNameTheCertificate: each verification failure names the certificate's subject and
// issuer, without the x509 package's prefix, so that an administrator knows which certificate to fix.
func TestCertificateErrorsNameTheCertificate(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	trusted, err := testpki.NewCA("Trusted Test CA", func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	evil, err := testpki.NewCA("Evil Test CA", func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(trusted.Cert)
	state := func(c tls.Certificate) tls.ConnectionState {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	}
	for _, tt := range []struct {
		name string
		cert tls.Certificate
		want []string
	}{
		{"untrusted", evil.MustIssue(testpki.Leaf{DNSNames: []string{"mx.example.com"}}),
			[]string{`certificate "mx.example.com" (issuer "Evil Test CA") is signed by an authority not in the trust store`}},
		{"expired", trusted.MustIssue(testpki.Leaf{DNSNames: []string{"mx.example.com"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}),
			[]string{`certificate "mx.example.com" (issuer "Trusted Test CA") expired at 2026-03-01T11:00:00Z`}},
		{"wrong name", trusted.MustIssue(testpki.Leaf{DNSNames: []string{"other.example"}}),
			[]string{`certificate "other.example" (issuer "Trusted Test CA") names [other.example], not mx.example.com`}},
	} {
		_, _, detail := VerifyCertificate("mx.example.com", state(tt.cert), roots, now)
		for _, w := range tt.want {
			if !strings.Contains(detail, w) || strings.Contains(detail, "x509:") {
				t.Errorf("%s: detail %q, want %q", tt.name, detail, w)
			}
		}
	}
}
