package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/testpki"
)

const policyHost = "mta-sts.example.com"

// seenRequest is what the policy server records about each request.
type seenRequest struct {
	Method, Path, Host string
	Header             http.Header
}

// policyServer is an HTTPS policy host on loopback that records SNI and requests.
type policyServer struct {
	srv  *httptest.Server
	port int

	mu   sync.Mutex
	snis []string
	reqs []seenRequest
}

type serverConfig struct {
	// cert picks the certificate for an SNI value; nil serves validCert for everything.
	cert func(sni string) *tls.Certificate
	// handler answers requests; nil serves pENF as text/plain.
	handler                http.HandlerFunc
	minVersion, maxVersion uint16
}

// pki is the test PKI of one test: a trusted root and an untrusted one.
type pki struct {
	trusted, evil *testpki.CA
}

func newPKI(t *testing.T) pki {
	t.Helper()
	trusted, err := testpki.NewCA("TestRoot", nil)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := testpki.NewCA("EvilRoot", nil)
	if err != nil {
		t.Fatal(err)
	}
	return pki{trusted: trusted, evil: evil}
}

func (p pki) valid(t *testing.T) *tls.Certificate {
	t.Helper()
	c, err := p.trusted.Issue(testpki.Leaf{DNSNames: []string{policyHost}})
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func servePolicy(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}
}

func newPolicyServer(t *testing.T, p pki, cfg serverConfig) *policyServer {
	t.Helper()
	ps := &policyServer{}
	if cfg.cert == nil {
		c := p.valid(t)
		cfg.cert = func(string) *tls.Certificate { return c }
	}
	if cfg.handler == nil {
		cfg.handler = servePolicy(pENF)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.mu.Lock()
		ps.reqs = append(ps.reqs, seenRequest{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header.Clone()})
		ps.mu.Unlock()
		cfg.handler(w, r)
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.TLS = &tls.Config{
		MinVersion: cfg.minVersion,
		MaxVersion: cfg.maxVersion,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			ps.mu.Lock()
			ps.snis = append(ps.snis, hello.ServerName)
			ps.mu.Unlock()
			return cfg.cert(hello.ServerName), nil
		},
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	ps.srv = s
	ps.port = s.Listener.Addr().(*net.TCPAddr).Port
	return ps
}

func (ps *policyServer) requests() ([]string, []seenRequest) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]string(nil), ps.snis...), append([]seenRequest(nil), ps.reqs...)
}

// loopbackOptions routes every policy host name to 127.0.0.1:port and allows only loopback.
func loopbackOptions(port int, roots *x509.CertPool) ClientOptions {
	return ClientOptions{
		LookupIP: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
		Port:      port,
		RootCAs:   roots,
		CheckAddr: PublicOnly([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}),
	}
}

func (ps *policyServer) fetcher(p pki) *Fetcher {
	return &Fetcher{Client: NewHTTPClient(loopbackOptions(ps.port, p.trusted.Pool())), Timeout: 10 * time.Second}
}

func fetchExample(t *testing.T, f *Fetcher) (*Policy, []byte, error) {
	t.Helper()
	return f.Fetch(t.Context(), address.MustParseDomain("example.com"))
}

func TestFetchRequest_STS20_STS21_STS30(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	good := p.valid(t)
	other, err := p.trusted.Issue(testpki.Leaf{DNSNames: []string{"default.test"}})
	if err != nil {
		t.Fatal(err)
	}
	ps := newPolicyServer(t, p, serverConfig{cert: func(sni string) *tls.Certificate {
		if sni == policyHost {
			return good
		}
		return &other
	}})
	var lookups []string
	var mu sync.Mutex
	o := loopbackOptions(ps.port, p.trusted.Pool())
	o.LookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
		mu.Lock()
		lookups = append(lookups, host)
		mu.Unlock()
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	f := &Fetcher{Client: NewHTTPClient(o)}

	pol, body, err := fetchExample(t, f)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if diff := cmp.Diff(enforcePolicy(), pol, ignoreLines()); diff != "" {
		t.Errorf("policy mismatch (-want +got):\n%s", diff)
	}
	if string(body) != pENF {
		t.Errorf("body = %q, want %q", body, pENF)
	}
	snis, reqs := ps.requests()
	if diff := cmp.Diff([]string{policyHost}, snis); diff != "" {
		t.Errorf("SNI mismatch (STS-21) (-want +got):\n%s", diff)
	}
	mu.Lock()
	if diff := cmp.Diff([]string{policyHost}, lookups); diff != "" {
		t.Errorf("LookupIP hosts mismatch (-want +got):\n%s", diff)
	}
	mu.Unlock()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	got := seenRequest{Method: r.Method, Path: r.Path, Host: r.Host}
	want := seenRequest{Method: http.MethodGet, Path: "/.well-known/mta-sts.txt", Host: policyHost}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request mismatch (STS-20) (-want +got):\n%s", diff)
	}
	// STS-30: no HTTP caching, so never a conditional request.
	for _, h := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range",
		"Cache-Control"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("request carries %s: %q", h, v)
		}
	}
}

func TestFetchIDNPolicyHost_STS5(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	const host = "mta-sts.xn--bcher-kva.example"
	c, err := p.trusted.Issue(testpki.Leaf{DNSNames: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	ps := newPolicyServer(t, p, serverConfig{cert: func(string) *tls.Certificate { return &c }})
	_, _, err = ps.fetcher(p).Fetch(t.Context(), address.MustParseDomain("bücher.example"))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	snis, reqs := ps.requests()
	if len(snis) != 1 || snis[0] != host || len(reqs) != 1 || reqs[0].Host != host {
		t.Errorf("SNI %q, requests %+v; want SNI and Host %q", snis, reqs, host)
	}
}

func TestFetchCertificate_STS22_STS23_STS24_STS25_STS26(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	now := time.Now()
	selfSigned, err := testpki.SelfSigned(policyHost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cert    func() (tls.Certificate, error)
		wantErr error // nil means the fetch succeeds
	}{
		{"valid", leaf(p.trusted, testpki.Leaf{DNSNames: []string{policyHost}}), nil},
		{"STS22_wrongName", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"www.example.com"}}), ErrWebPKI},
		{"STS22_domainOnly", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"example.com"}}), ErrWebPKI},
		{"STS23_wildcard", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"*.example.com"}}), nil},
		{"STS23_wildcardTLD", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"*.com"}}), ErrWebPKI},
		{"STS23_partialWildcard", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"mta-*.example.com"}}), ErrWebPKI},
		{"STS23_wildcardBelow", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"*.mta-sts.example.com"}}), ErrWebPKI},
		{"STS23_doubleWildcard", leaf(p.trusted, testpki.Leaf{DNSNames: []string{"*.*.example.com"}}), ErrWebPKI},
		{"STS24_cnOnly", leaf(p.trusted, testpki.Leaf{CommonName: policyHost}), ErrWebPKI},
		{"STS24_cnAndOtherSAN", leaf(p.trusted, testpki.Leaf{CommonName: policyHost, DNSNames: []string{"other.test"}}),
			ErrWebPKI},
		{"STS25_untrustedRoot", leaf(p.evil, testpki.Leaf{DNSNames: []string{policyHost}}), ErrWebPKI},
		{"STS25_selfSigned", func() (tls.Certificate, error) { return selfSigned, nil }, ErrWebPKI},
		{"STS26_expired", leaf(p.trusted, testpki.Leaf{DNSNames: []string{policyHost},
			NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}), ErrWebPKI},
		{"STS26_notYetValid", leaf(p.trusted, testpki.Leaf{DNSNames: []string{policyHost},
			NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)}), ErrWebPKI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := tt.cert()
			if err != nil {
				t.Fatal(err)
			}
			ps := newPolicyServer(t, p, serverConfig{cert: func(string) *tls.Certificate { return &c }})
			pol, _, err := fetchExample(t, ps.fetcher(p))
			if tt.wantErr == nil {
				if err != nil || pol == nil {
					t.Fatalf("Fetch = %v, %v; want a policy", pol, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Fetch error = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, ErrFetch) || errors.Is(err, ErrPolicyInvalid) {
				t.Errorf("Fetch error %v wraps more than one category", err)
			}
			if _, reqs := ps.requests(); len(reqs) != 0 {
				t.Errorf("server got %d HTTP requests over an unverified connection", len(reqs))
			}
		})
	}
}

func leaf(ca *testpki.CA, l testpki.Leaf) func() (tls.Certificate, error) {
	return func() (tls.Certificate, error) { return ca.Issue(l) }
}

func TestFetchStatus_STS28_STS29(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	codes := []int{201, 202, 203, 204, 206, 301, 302, 303, 304, 307, 308, 404, 410, 500, 503}
	for _, code := range codes {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			ps := newPolicyServer(t, p, serverConfig{handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/p.txt" {
					servePolicy(pENF)(w, r)
					return
				}
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Location", "https://"+policyHost+"/p.txt")
				w.WriteHeader(code)
				if code != http.StatusNoContent && code != http.StatusNotModified {
					io.WriteString(w, pENF)
				}
			}})
			pol, _, err := fetchExample(t, ps.fetcher(p))
			if !errors.Is(err, ErrFetch) {
				t.Fatalf("Fetch = %v, %v; want ErrFetch", pol, err)
			}
			// STS-29: the redirect target is never requested.
			if _, reqs := ps.requests(); len(reqs) != 1 {
				t.Errorf("server got %d requests, want 1: %+v", len(reqs), reqs)
			}
		})
	}
}

func TestFetchNeverFollowsRedirectsWithPermissiveClient_STS29(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ps := newPolicyServer(t, p, serverConfig{handler: func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/p.txt" {
			servePolicy(pENF)(w, r)
			return
		}
		http.Redirect(w, r, "/p.txt", http.StatusFound)
	}})
	// A client that would follow redirects on its own: Fetch must still refuse.
	permissive := NewHTTPClient(loopbackOptions(ps.port, p.trusted.Pool()))
	permissive.CheckRedirect = nil
	_, _, err := fetchExample(t, &Fetcher{Client: permissive})
	if !errors.Is(err, ErrFetch) {
		t.Fatalf("Fetch error = %v, want ErrFetch", err)
	}
	if _, reqs := ps.requests(); len(reqs) != 1 {
		t.Errorf("server got %d requests, want 1", len(reqs))
	}
}

func TestFetchNoHTTPCaching_STS30(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	var mu sync.Mutex
	n := 0
	ps := newPolicyServer(t, p, serverConfig{handler: func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "max-age=86400")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
		if first {
			io.WriteString(w, pENF)
			return
		}
		io.WriteString(w, strings.Replace(pENF, "enforce", "testing", 1))
	}})
	f := ps.fetcher(p)
	for i, want := range []Mode{ModeEnforce, ModeTesting} {
		pol, _, err := fetchExample(t, f)
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if pol.Mode != want {
			t.Errorf("fetch %d: mode %q, want %q", i, pol.Mode, want)
		}
	}
	_, reqs := ps.requests()
	if len(reqs) != 2 {
		t.Fatalf("server got %d requests, want 2", len(reqs))
	}
	for _, h := range []string{"If-None-Match", "If-Modified-Since"} {
		if v := reqs[1].Header.Get(h); v != "" {
			t.Errorf("second request carries %s: %q", h, v)
		}
	}
}

func TestFetchContentType_STS31(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	tests := []struct {
		ct      string // "-" means no Content-Type header at all
		wantErr error
	}{
		{"text/plain", nil},
		{"text/plain; charset=utf-8", nil},
		{"text/plain; charset=us-ascii", nil},
		{"text/plain; format=flowed", nil},
		{"TEXT/Plain", nil},
		{"text/plain; charset=iso-8859-1", nil},
		{"text/plain; charset", nil},
		{"text/html", ErrPolicyInvalid},
		{"application/octet-stream", ErrPolicyInvalid},
		{"text/plainx", ErrPolicyInvalid},
		{"", ErrPolicyInvalid},
		{"-", ErrPolicyInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			t.Parallel()
			ps := newPolicyServer(t, p, serverConfig{handler: func(w http.ResponseWriter, r *http.Request) {
				if tt.ct == "-" {
					// Stop net/http from sniffing a type.
					w.Header()["Content-Type"] = nil
				} else {
					w.Header().Set("Content-Type", tt.ct)
				}
				io.WriteString(w, pENF)
			}})
			pol, _, err := fetchExample(t, ps.fetcher(p))
			if tt.wantErr == nil {
				if err != nil || pol == nil {
					t.Fatalf("Fetch = %v, %v; want a policy", pol, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Fetch error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// policyOfSize returns a valid policy of exactly n bytes (n must be at least len(pENF)+8).
func policyOfSize(n int) string {
	pad := n - len(pENF) - len("x: \n")
	return pENF + "x: " + strings.Repeat("a", pad) + "\n"
}

func TestFetchBodySize_STS32(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	tests := []struct {
		name    string
		maxBody int64
		body    string
		wantErr error
	}{
		{"default64KiB", 0, policyOfSize(64 << 10), nil},
		{"default64KiBPlus1", 0, policyOfSize(64<<10 + 1), ErrPolicyInvalid},
		{"custom", 200, policyOfSize(200), nil},
		{"customPlus1", 200, policyOfSize(201), ErrPolicyInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if len(tt.body) < 200 {
				t.Fatalf("bad fixture: body of %d bytes", len(tt.body))
			}
			ps := newPolicyServer(t, p, serverConfig{handler: servePolicy(tt.body)})
			f := ps.fetcher(p)
			f.MaxBody = tt.maxBody
			pol, body, err := fetchExample(t, f)
			if tt.wantErr == nil {
				if err != nil || pol == nil {
					t.Fatalf("Fetch = %v, %v; want a policy", pol, err)
				}
				if len(body) != len(tt.body) {
					t.Errorf("body of %d bytes, want %d", len(body), len(tt.body))
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || pol != nil {
				t.Fatalf("Fetch = %v, %v; want %v", pol, err, tt.wantErr)
			}
		})
	}
}

func TestFetchUnboundedBodyIsCut_STS32(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	const streamed = 8 << 20
	ps := newPolicyServer(t, p, serverConfig{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		chunk := []byte(strings.Repeat("x: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n", 1024))
		for sent := 0; sent < streamed; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return // the client hung up, as it should
			}
		}
	}})
	_, body, err := fetchExample(t, ps.fetcher(p))
	if !errors.Is(err, ErrPolicyInvalid) {
		t.Fatalf("Fetch error = %v, want ErrPolicyInvalid", err)
	}
	if body != nil {
		t.Errorf("got %d body bytes with an oversize error", len(body))
	}
}

func TestFetchInvalidPolicy_STS52(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	const bad = "mode: enforce\nmx: mx1.example.com\nmax_age: 86400\n" // no version
	ps := newPolicyServer(t, p, serverConfig{handler: servePolicy(bad)})
	pol, body, err := fetchExample(t, ps.fetcher(p))
	if !errors.Is(err, ErrPolicyInvalid) || pol != nil {
		t.Fatalf("Fetch = %v, %v; want ErrPolicyInvalid", pol, err)
	}
	if string(body) != bad {
		t.Errorf("body = %q, want the invalid body for diagnostics", body)
	}
}

func TestFetchTimeout_STS33(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	stall := func(release <-chan struct{}, before func(w http.ResponseWriter)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			before(w)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}
	tests := []struct {
		name    string
		handler func(release <-chan struct{}) http.HandlerFunc
	}{
		{"stallBeforeHeaders", func(rel <-chan struct{}) http.HandlerFunc {
			return stall(rel, func(http.ResponseWriter) {})
		}},
		{"stallInBody", func(rel <-chan struct{}) http.HandlerFunc {
			return stall(rel, func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", fmt.Sprint(len(pENF)))
				io.WriteString(w, pENF[:10])
				w.(http.Flusher).Flush()
			})
		}},
		{"trickle", func(rel <-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-r.Context().Done():
						return
					case <-rel:
						return
					case <-tick.C:
						if _, err := io.WriteString(w, "x"); err != nil {
							return
						}
						w.(http.Flusher).Flush()
					}
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			ps := newPolicyServer(t, p, serverConfig{handler: tt.handler(release)})
			t.Cleanup(func() { close(release) }) // runs before the server's Close
			f := ps.fetcher(p)
			f.Timeout = 300 * time.Millisecond
			start := time.Now()
			_, _, err := fetchExample(t, f)
			if !errors.Is(err, ErrFetch) {
				t.Fatalf("Fetch error = %v, want ErrFetch", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Fetch took %v with a 300ms timeout", d)
			}
		})
	}
}

func TestFetchTimeoutTLSHandshake_STS33(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				<-done // accept TCP, never speak TLS
				c.Close()
			})
		}
	})
	p := newPKI(t)
	f := &Fetcher{Client: NewHTTPClient(loopbackOptions(ln.Addr().(*net.TCPAddr).Port, p.trusted.Pool())),
		Timeout: 300 * time.Millisecond}
	start := time.Now()
	_, _, err = fetchExample(t, f)
	if !errors.Is(err, ErrFetch) {
		t.Fatalf("Fetch error = %v, want ErrFetch", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Fetch took %v with a 300ms timeout", d)
	}
}

func TestFetchTLSVersions_STS37(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	tests := []struct {
		name     string
		min, max uint16
		wantErr  error
	}{
		{"tls13only", tls.VersionTLS13, tls.VersionTLS13, nil},
		{"tls12only", tls.VersionTLS12, tls.VersionTLS12, nil},
		{"tls11only", tls.VersionTLS11, tls.VersionTLS11, ErrFetch},
		{"tls10only", tls.VersionTLS10, tls.VersionTLS10, ErrFetch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ps := newPolicyServer(t, p, serverConfig{minVersion: tt.min, maxVersion: tt.max})
			pol, _, err := fetchExample(t, ps.fetcher(p))
			if tt.wantErr == nil {
				if err != nil || pol == nil {
					t.Fatalf("Fetch = %v, %v; want a policy", pol, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Fetch error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestFetchConnectFailures_STS36(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ps := newPolicyServer(t, p, serverConfig{})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	lookupErr := errors.New("NXDOMAIN")
	tests := []struct {
		name     string
		opts     func(o *ClientOptions)
		wantErrs []error
	}{
		{"lookupError", func(o *ClientOptions) {
			o.LookupIP = func(context.Context, string) ([]netip.Addr, error) { return nil, lookupErr }
		}, []error{ErrFetch, lookupErr}},
		{"noAddresses", func(o *ClientOptions) {
			o.LookupIP = func(context.Context, string) ([]netip.Addr, error) { return nil, nil }
		}, []error{ErrFetch}},
		{"noLookupIP", func(o *ClientOptions) { o.LookupIP = nil }, []error{ErrFetch}},
		{"refused", func(o *ClientOptions) { o.Port = closedPort }, []error{ErrFetch}},
		{"forbiddenAddress", func(o *ClientOptions) { o.CheckAddr = PublicOnly(nil) },
			[]error{ErrFetch, ErrForbiddenAddress}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := loopbackOptions(ps.port, p.trusted.Pool())
			tt.opts(&o)
			_, _, err := fetchExample(t, &Fetcher{Client: NewHTTPClient(o)})
			for _, want := range tt.wantErrs {
				if !errors.Is(err, want) {
					t.Errorf("Fetch error = %v, want it to wrap %v", err, want)
				}
			}
		})
	}
	if snis, _ := ps.requests(); len(snis) != 0 {
		t.Errorf("policy server saw %d handshakes, want none", len(snis))
	}
}

func TestFetchTriesAddressesInOrder(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ps := newPolicyServer(t, p, serverConfig{})
	o := loopbackOptions(ps.port, p.trusted.Pool())
	addrs := []netip.Addr{
		netip.MustParseAddr("10.0.0.1"),  // refused by CheckAddr
		netip.MustParseAddr("127.0.0.2"), // nothing listens there: connection refused
		netip.MustParseAddr("127.0.0.1"), // the server
	}
	o.LookupIP = func(context.Context, string) ([]netip.Addr, error) { return addrs, nil }
	var mu sync.Mutex
	var checked []netip.Addr
	allow := PublicOnly([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	o.CheckAddr = func(a netip.Addr) error {
		mu.Lock()
		checked = append(checked, a)
		mu.Unlock()
		return allow(a)
	}
	if _, _, err := fetchExample(t, &Fetcher{Client: NewHTTPClient(o)}); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(addrs, checked, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("addresses tried (-want +got):\n%s", diff)
	}
}

func TestFetchMisuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		f      *Fetcher
		domain address.Domain
	}{
		{"nilClient", &Fetcher{}, address.MustParseDomain("example.com")},
		{"zeroDomain", &Fetcher{Client: NewHTTPClient(ClientOptions{})}, address.Domain{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := tt.f.Fetch(t.Context(), tt.domain); !errors.Is(err, ErrFetch) {
				t.Errorf("Fetch error = %v, want ErrFetch", err)
			}
		})
	}
}

func TestFetchCanceledContext(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ps := newPolicyServer(t, p, serverConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := ps.fetcher(p).Fetch(ctx, address.MustParseDomain("example.com")); !errors.Is(err, ErrFetch) {
		t.Errorf("Fetch error = %v, want ErrFetch", err)
	}
}

func TestPolicyURL_STS20(t *testing.T) {
	t.Parallel()
	got := PolicyURL(address.MustParseDomain("Bücher.Example."))
	if want := "https://mta-sts.xn--bcher-kva.example/.well-known/mta-sts.txt"; got != want {
		t.Errorf("PolicyURL = %q, want %q", got, want)
	}
}
