package simnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// maxPostBytes bounds a report body a sink records.
const maxPostBytes = 32 << 20

// Request is one HTTP request an HTTPS host received.
type Request struct {
	Method     string
	Path       string // r.URL.Path
	RequestURI string // as sent on the request line
	Host       string // the Host header
	SNI        string
	TLSVersion uint16
	Header     http.Header
	At         time.Time
}

// HTTPSHost is a simulated HTTPS server. Its methods are safe for concurrent use.
type HTTPSHost struct {
	n    *Net
	host string
	ip   netip.Addr
	srv  *http.Server
	tlsIdentity

	mu      sync.Mutex
	sig     signal
	ln      net.Listener // nil while stopped
	handler http.Handler
	snis    []string
	reqs    []Request
}

// AddHTTPSHost serves h over TLS (HTTP/1.1) for host on a new address at HTTPSPort and adds host's A record.
// cert nil means a valid certificate for host from TrustedCA.
func (n *Net) AddHTTPSHost(host string, h http.Handler, cert *tls.Certificate) (*HTTPSHost, error) {
	if host == "" {
		return nil, errors.New("simnet: HTTPS host without a name")
	}
	if cert == nil {
		c, err := n.IssueCert(host)
		if err != nil {
			return nil, err
		}
		cert = c
	}
	if h == nil {
		h = http.NotFoundHandler()
	}
	ln, ip, err := n.listen(n.HTTPSPort)
	if err != nil {
		return nil, err
	}
	s := &HTTPSHost{n: n, host: host, ip: ip, handler: h}
	s.cert = cert
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if err := n.onClose(s.close); err != nil {
		ln.Close()
		return nil, err
	}
	s.mu.Lock()
	err = s.serve(ln)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.DNS.AddA(host, ip)
	return s, nil
}

// serve serves ln; s.mu is held.
func (s *HTTPSHost) serve(ln net.Listener) error {
	tl := tls.NewListener(ln, &tls.Config{GetConfigForClient: s.tlsConfig})
	if err := s.n.spawn(func() { _ = s.srv.Serve(tl) }); err != nil {
		ln.Close()
		return err
	}
	s.ln = ln
	return nil
}

// close stops the host for good; closing the connections also cancels the contexts of stalled requests.
func (s *HTTPSHost) close() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	s.mu.Unlock()
	_ = s.srv.Close()
}

func (s *HTTPSHost) tlsConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	s.mu.Lock()
	s.snis = append(s.snis, hello.ServerName)
	s.sig.broadcast()
	s.mu.Unlock()
	cfg := s.config(hello.ServerName)
	cfg.NextProtos = []string{"http/1.1"}
	return cfg, nil
}

func (s *HTTPSHost) serveHTTP(w http.ResponseWriter, r *http.Request) {
	req := Request{
		Method: r.Method, Path: r.URL.Path, RequestURI: r.RequestURI, Host: r.Host,
		Header: r.Header.Clone(), At: s.n.now(),
	}
	if r.TLS != nil {
		req.SNI, req.TLSVersion = r.TLS.ServerName, r.TLS.Version
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.sig.broadcast()
	h := s.handler
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

// Host returns the host name.
func (s *HTTPSHost) Host() string { return s.host }

// IP returns the host's address.
func (s *HTTPSHost) IP() netip.Addr { return s.ip }

// Addr returns "ip:port" of the host.
func (s *HTTPSHost) Addr() string { return netip.AddrPortFrom(s.ip, uint16(s.n.HTTPSPort)).String() }

// SetHandler replaces the handler for new requests.
func (s *HTTPSHost) SetHandler(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}

// Stop closes the listener so that new connections are refused.
func (s *HTTPSHost) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
}

// Start listens again after Stop.
func (s *HTTPSHost) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		return fmt.Errorf("simnet: %s: %w", s.host, err)
	}
	return s.serve(ln)
}

// Requests returns the requests received, in order.
func (s *HTTPSHost) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// SNIs returns the server name of every TLS ClientHello received, including failed handshakes.
func (s *HTTPSHost) SNIs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.snis...)
}

// WaitRequests blocks until at least n requests arrived or ctx is done.
func (s *HTTPSHost) WaitRequests(ctx context.Context, n int) error {
	return waitFor(ctx, &s.mu, &s.sig, func() (bool, string) {
		return len(s.reqs) >= n, fmt.Sprintf("%d requests at %s (have %d)", n, s.host, len(s.reqs))
	})
}

// MTASTSPath is where an MTA-STS policy is served (RFC 8461 Section 3.3).
const MTASTSPath = "/.well-known/mta-sts.txt"

// PolicyHost is the HTTPS host "mta-sts.<domain>" serving an MTA-STS policy whose response can be changed
// while running. SetHandler (from HTTPSHost) overrides all of it.
type PolicyHost struct {
	*HTTPSHost

	pmu         sync.Mutex
	body        string
	status      int
	contentType string
	header      http.Header
	delay       time.Duration
	stall       bool
}

// ServeMTASTSPolicy adds the host mta-sts.<domain> serving body at MTASTSPath with status 200 and
// Content-Type text/plain; other paths get 404. It does not publish the _mta-sts TXT record.
func (n *Net) ServeMTASTSPolicy(domain, body string) (*PolicyHost, error) {
	p := &PolicyHost{body: body, status: http.StatusOK, contentType: "text/plain", header: http.Header{}}
	h, err := n.AddHTTPSHost("mta-sts."+strings.TrimSuffix(domain, "."), http.HandlerFunc(p.serve), nil)
	if err != nil {
		return nil, err
	}
	p.HTTPSHost = h
	return p, nil
}

func (p *PolicyHost) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != MTASTSPath {
		http.NotFound(w, r)
		return
	}
	p.pmu.Lock()
	body, status, ct, header, delay, stall := p.body, p.status, p.contentType, p.header.Clone(), p.delay, p.stall
	p.pmu.Unlock()
	// A stalled or delayed request that the client gives up on is aborted, never answered: returning from
	// the handler would let net/http send an implicit empty 200, which a client still reading could take
	// for a policy.
	if stall {
		<-r.Context().Done()
		panic(http.ErrAbortHandler)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			panic(http.ErrAbortHandler)
		}
	}
	for k, vs := range header {
		w.Header()[k] = vs
	}
	if ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// SetPolicy changes the policy body.
func (p *PolicyHost) SetPolicy(body string) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.body = body
}

// SetStatus changes the HTTP status code.
func (p *PolicyHost) SetStatus(code int) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.status = code
}

// SetContentType changes the Content-Type; "" sends none of our own (net/http may then sniff one).
func (p *PolicyHost) SetContentType(ct string) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.contentType = ct
}

// SetHeader sets an extra response header; no values removes it.
func (p *PolicyHost) SetHeader(key string, values ...string) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if len(values) == 0 {
		p.header.Del(key)
		return
	}
	p.header[http.CanonicalHeaderKey(key)] = values
}

// SetDelay delays every response by d (real time).
func (p *PolicyHost) SetDelay(d time.Duration) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.delay = d
}

// SetStall makes the host accept requests and never answer them, until the client gives up or the Net closes.
func (p *PolicyHost) SetStall(stall bool) {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	p.stall = stall
}

// Post is one POST request a Sink recorded.
type Post struct {
	Path        string
	ContentType string
	Header      http.Header
	Body        []byte
	At          time.Time
}

// Sink is an HTTPS host recording POSTs to one path, as a TLSRPT https: rua endpoint (RFC 8460 Section 3).
type Sink struct {
	*HTTPSHost
	path string
	now  func() time.Time // not through HTTPSHost: requests may arrive before it is set

	smu    sync.Mutex
	sig    signal
	status int
	posts  []Post
}

// AddHTTPSSink adds host recording the POST bodies sent to path and answering them 200 (see SetStatus).
// Other methods get 405 and other paths 404.
func (n *Net) AddHTTPSSink(host, path string) (*Sink, error) {
	s := &Sink{path: path, now: n.now, status: http.StatusOK}
	h, err := n.AddHTTPSHost(host, http.HandlerFunc(s.serve), nil)
	if err != nil {
		return nil, err
	}
	s.HTTPSHost = h
	return s, nil
}

func (s *Sink) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.path {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPostBytes))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	p := Post{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Header: r.Header.Clone(), Body: body,
		At: s.now()}
	s.smu.Lock()
	s.posts = append(s.posts, p)
	s.sig.broadcast()
	status := s.status
	s.smu.Unlock()
	w.WriteHeader(status)
}

// SetStatus changes the status answered to POSTs; the body is recorded whatever the status.
func (s *Sink) SetStatus(code int) {
	s.smu.Lock()
	defer s.smu.Unlock()
	s.status = code
}

// Posts returns the POSTs received, in order.
func (s *Sink) Posts() []Post {
	s.smu.Lock()
	defer s.smu.Unlock()
	return append([]Post(nil), s.posts...)
}

// WaitPosts blocks until at least n POSTs arrived or ctx is done.
func (s *Sink) WaitPosts(ctx context.Context, n int) error {
	return waitFor(ctx, &s.smu, &s.sig, func() (bool, string) {
		return len(s.posts) >= n, fmt.Sprintf("%d POSTs at %s (have %d)", n, s.host, len(s.posts))
	})
}
