package simnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/testpki"
)

const policyENF = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmax_age: 604800\r\n"

// get fetches url with c and returns status, Content-Type and body.
func get(t *testing.T, c *http.Client, url string) (int, string, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(waitCtx(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body), err
}

func TestPolicyHost(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	p, err := n.ServeMTASTSPolicy("example.com", policyENF)
	if err != nil {
		t.Fatal(err)
	}
	if p.Host() != "mta-sts.example.com" {
		t.Errorf("Host = %q", p.Host())
	}

	// A client of its own, dialing the allocated address directly and verifying against TrustedCA.
	direct := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, p.Addr())
		},
		TLSClientConfig: &tls.Config{RootCAs: n.RootPool()},
	}}
	url := "https://mta-sts.example.com" + MTASTSPath
	status, ct, body, err := get(t, direct, url)
	if err != nil {
		t.Fatal(err)
	}
	if status != 200 || ct != "text/plain" || body != policyENF {
		t.Errorf("got %d %q %q, want 200 text/plain and the policy", status, ct, body)
	}
	reqs := p.Requests()
	if len(reqs) != 1 {
		t.Fatalf("Requests = %d, want 1", len(reqs))
	}
	r := reqs[0]
	got := Request{Method: r.Method, Path: r.Path, RequestURI: r.RequestURI, Host: r.Host, SNI: r.SNI,
		TLSVersion: r.TLSVersion}
	want := Request{Method: "GET", Path: MTASTSPath, RequestURI: MTASTSPath, Host: "mta-sts.example.com",
		SNI: "mta-sts.example.com", TLSVersion: tls.VersionTLS13}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Request (-want +got):\n%s", diff)
	}
	if r.Header.Get("User-Agent") == "" || r.At.IsZero() {
		t.Errorf("request headers or time not recorded: %+v", r)
	}

	// Runtime changes, fetched through the Net's own client (port 443 mapped to HTTPSPort).
	c := n.HTTPClient()
	p.SetPolicy("version: STSv1\r\nmode: testing\r\n")
	p.SetStatus(http.StatusAccepted)
	p.SetContentType("text/html")
	p.SetHeader("Cache-Control", "no-store")
	status, ct, body, err = get(t, c, url)
	if err != nil {
		t.Fatal(err)
	}
	if status != 202 || ct != "text/html" || body != "version: STSv1\r\nmode: testing\r\n" {
		t.Errorf("after changes: %d %q %q", status, ct, body)
	}
	if status, _, _, err := get(t, c, "https://mta-sts.example.com/other"); err != nil || status != 404 {
		t.Errorf("other path: %d, %v; want 404", status, err)
	}
	p.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.test/", http.StatusFound)
	}))
	noFollow := n.HTTPClient()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if status, _, _, err := get(t, noFollow, url); err != nil || status != 302 {
		t.Errorf("SetHandler: %d, %v; want 302", status, err)
	}
	if err := p.WaitRequests(waitCtx(t), 4); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyHostCertificates(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	p, err := n.ServeMTASTSPolicy("example.com", policyENF)
	if err != nil {
		t.Fatal(err)
	}
	c := n.HTTPClient()
	url := "https://mta-sts.example.com" + MTASTSPath

	isUnknownAuthority := func(err error) bool {
		var e x509.UnknownAuthorityError
		return errors.As(err, &e)
	}
	isHostname := func(err error) bool {
		var e x509.HostnameError
		return errors.As(err, &e)
	}
	isNil := func(err error) bool { return err == nil }
	tests := []struct {
		name string
		leaf testpki.Leaf
		ca   *testpki.CA
		want func(error) bool
	}{
		{"Untrusted", testpki.Leaf{DNSNames: []string{"mta-sts.example.com"}}, n.EvilCA, isUnknownAuthority},
		{"WrongName", testpki.Leaf{DNSNames: []string{"mx1.example.com"}}, n.TrustedCA, isHostname},
		{"Wildcard", testpki.Leaf{DNSNames: []string{"*.example.com"}}, n.TrustedCA, isNil},
	}
	for _, tt := range tests {
		cert := tt.ca.MustIssue(tt.leaf)
		p.SetCert(&cert)
		if _, _, _, err := get(t, c, url); !tt.want(err) {
			t.Errorf("%s: unexpected fetch error %v", tt.name, err)
		}
	}

	// A per-SNI certificate wins over the default one.
	good := n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: []string{"mta-sts.example.com"}})
	p.SetCertForSNI(map[string]*tls.Certificate{"mta-sts.example.com": &good})
	if _, _, _, err := get(t, c, url); err != nil {
		t.Errorf("per-SNI certificate: %v", err)
	}
	if got := len(p.SNIs()); got != 4 {
		t.Errorf("SNIs recorded = %d, want 4 (failed handshakes included)", got)
	}
}

func TestPolicyHostStallAndStop(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	p, err := n.ServeMTASTSPolicy("example.com", policyENF)
	if err != nil {
		t.Fatal(err)
	}
	c := n.HTTPClient()
	url := "https://mta-sts.example.com" + MTASTSPath

	p.SetStall(true)
	ctx, cancel := context.WithCancel(waitCtx(t))
	errc := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			errc <- err
			return
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	if err := p.WaitRequests(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel() // the client gives up; the stalled host never answered
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("stalled fetch: err = %v, want context.Canceled", err)
	}
	p.SetStall(false)

	p.Stop()
	if _, _, _, err := get(t, c, url); err == nil {
		t.Errorf("fetch after Stop succeeded")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if status, _, _, err := get(t, c, url); err != nil || status != 200 {
		t.Errorf("fetch after Start: %d, %v", status, err)
	}
}

func TestHTTPSSink(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	s, err := n.AddHTTPSSink("reports.test", "/tlsrpt")
	if err != nil {
		t.Fatal(err)
	}
	c := n.HTTPClient()
	post := func(path string) int {
		t.Helper()
		body := bytes.NewReader([]byte(`{"organization-name":"x"}`))
		req, err := http.NewRequestWithContext(waitCtx(t), http.MethodPost, "https://reports.test"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/tlsrpt+gzip")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("/tlsrpt"); got != 200 {
		t.Errorf("POST status %d, want 200", got)
	}
	if got := post("/other"); got != 404 {
		t.Errorf("POST elsewhere: status %d, want 404", got)
	}
	s.SetStatus(http.StatusServiceUnavailable)
	if got := post("/tlsrpt"); got != 503 {
		t.Errorf("POST after SetStatus: %d, want 503", got)
	}
	if err := s.WaitPosts(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	for i, p := range s.Posts() {
		if p.Path != "/tlsrpt" || p.ContentType != "application/tlsrpt+gzip" || string(p.Body) != `{"organization-name":"x"}` {
			t.Errorf("post %d: %+v", i, p)
		}
	}
	if status, _, _, err := get(t, c, "https://reports.test/tlsrpt"); err != nil || status != 405 {
		t.Errorf("GET: %d, %v; want 405", status, err)
	}
}

// TestCloseEndsStalledRequests shows that Close does not wait for a stalled policy fetch to give up.
func TestCloseEndsStalledRequests(t *testing.T) {
	t.Parallel()
	n, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	p, err := n.ServeMTASTSPolicy("example.com", policyENF)
	if err != nil {
		t.Fatal(err)
	}
	p.SetStall(true)
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := get(t, n.HTTPClient(), "https://mta-sts.example.com"+MTASTSPath)
		errc <- err
	}()
	if err := p.WaitRequests(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	n.Close()
	if err := <-errc; err == nil {
		t.Errorf("stalled fetch succeeded after Close")
	}
}
