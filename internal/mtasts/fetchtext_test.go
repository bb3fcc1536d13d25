package mtasts

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testpki"
)

// TestFetchFailureTextsForPeople: a failed policy fetch reads, in sts test output, logs and reports, as its
// category, the URL once and the cause in plain words: the policy host's certificate by subject and issuer,
// a socket failure without the socket addresses or net/http's repetition of the URL.
func TestFetchFailureTextsForPeople(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	expiry := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second)
	const url = "https://mta-sts.example.com/.well-known/mta-sts.txt"
	tests := []struct {
		name string
		cert func() (tls.Certificate, error)
		want string
	}{
		{"untrusted", leaf(p.evil, testpki.Leaf{CommonName: "Policy Host", DNSNames: []string{policyHost}}),
			`mtasts: policy host certificate invalid: GET ` + url + `: certificate "Policy Host" (issuer "EvilRoot") is signed by an authority not in the trust store`},
		{"wrong name", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"www.example.com", "example.com"}}),
			`mtasts: policy host certificate invalid: GET ` + url + `: certificate "www.example.com" (issuer "TestRoot") names [www.example.com example.com], not ` + policyHost},
		{"expired", leaf(p.trusted, testpki.Leaf{DNSNames: []string{policyHost}, NotBefore: expiry.Add(-24 * time.Hour), NotAfter: expiry}),
			`mtasts: policy host certificate invalid: GET ` + url + `: certificate "` + policyHost + `" (issuer "TestRoot") expired at ` + expiry.Format(time.RFC3339)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := tt.cert()
			if err != nil {
				t.Fatal(err)
			}
			ps := newPolicyServer(t, p, serverConfig{cert: func(string) *tls.Certificate { return &c }})
			_, _, err = fetchExample(t, ps.fetcher(p))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Fetch error = %v\nwant          %s", err, tt.want)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		closed, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := closed.Addr().(*net.TCPAddr).Port
		closed.Close()
		_, _, err = fetchExample(t, &Fetcher{Client: NewHTTPClient(loopbackOptions(port, p.trusted.Pool()))})
		want := `mtasts: policy fetch failed: GET ` + url + `: connection refused`
		if err == nil || err.Error() != want {
			t.Errorf("Fetch error = %v\nwant          %s", err, want)
		}
	})
}
