// Package dnstest provides a small recursive-resolver look-alike for tests: a miekg/dns server on 127.0.0.1
// (UDP and TCP on the same port) that answers from an in-memory record set, follows CNAMEs the way a
// recursive resolver does, sets the AD bit for names marked secure, truncates UDP answers that exceed the
// client's advertised size, and can be told to fail (SERVFAIL, REFUSED, NXDOMAIN, DNSSEC bogus) or to drop
// queries. A negative answer (NXDOMAIN, NODATA) carries the SOA record added for the name or its closest
// ancestor, if any (RFC 2308 Section 3), so that negative caching can be tested.
//
// It is not an authoritative server: it has no zones, no delegation, no wildcards and no DNSSEC signatures.
// "Secure" is a label on names, standing in for a validating resolver's verdict.
package dnstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dnsx"
)

// Failure makes the server answer a query with an error instead of its records.
type Failure int

const (
	// FailNone clears a failure.
	FailNone Failure = iota
	// FailServFail answers SERVFAIL (as a validating resolver does for bogus data).
	FailServFail
	// FailRefused answers REFUSED.
	FailRefused
	// FailNXDomain answers NXDOMAIN even if the name has records.
	FailNXDomain
	// FailDrop sends no answer at all, so the client times out.
	FailDrop
	// FailBogus answers as a validating resolver does for data whose DNSSEC validation failed: SERVFAIL with
	// the Extended DNS Error "DNSSEC Bogus" (RFC 8914 Section 4.7), or the records, without the AD bit, to a
	// query with checking disabled (RFC 4035 Section 3.2.2).
	FailBogus
)

// Query is one query the server received.
type Query struct {
	Name string // lower case, fully qualified (with trailing dot)
	Type uint16
	Net  string // "udp" or "tcp"
	DO   bool   // the EDNS0 DO bit was set
	RD   bool   // recursion desired was set
}

type failKey struct {
	name  string
	qtype uint16 // 0: every type
}

// Server is a running test DNS server. Its methods are safe for concurrent use.
type Server struct {
	tb   testing.TB
	addr string

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN owner name
	fails   map[failKey]Failure
	secure  map[string]bool // by lower-case FQDN; the longest matching suffix decides
	noChase bool
	queries []Query
	arrived chan struct{} // closed and replaced whenever a query arrives
}

// New starts a server on 127.0.0.1 (a free port, UDP and TCP) and stops it when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		tb:      tb,
		records: make(map[string][]dns.RR),
		fails:   make(map[failKey]Failure),
		secure:  make(map[string]bool),
		arrived: make(chan struct{}),
	}
	pc, ln, err := listenPair()
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP)},
		{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			tb.Fatalf("dnstest: serve: %v", err)
		}
		tb.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.ShutdownContext(ctx)
			<-done
		})
	}
	return s
}

// listenPair binds UDP and TCP on the same free loopback port.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		lastErr = err
		_ = pc.Close()
	}
	return nil, nil, fmt.Errorf("no free port for UDP and TCP: %w", lastErr)
}

// Addr returns the server's "127.0.0.1:port" for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Client returns a dnsx.Client that asks only this server, with a short timeout and one attempt so that
// failure tests stay fast.
func (s *Server) Client() *dnsx.Client {
	return &dnsx.Client{Servers: []string{s.addr}, Timeout: 200 * time.Millisecond, Attempts: 1}
}

// Add adds records written in zone-file syntax, e.g. "example.com. 300 IN MX 10 mx.example.com." (the TTL
// and class may be left out). A record that does not parse fails the test.
func (s *Server) Add(records ...string) {
	s.tb.Helper()
	rrs := make([]dns.RR, 0, len(records))
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil || rr == nil {
			s.tb.Fatalf("dnstest: bad record %q: %v", r, err)
			return
		}
		rrs = append(rrs, rr)
	}
	s.AddRR(rrs...)
}

// AddRR adds parsed records.
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		name := canon(rr.Header().Name)
		s.records[name] = append(s.records[name], dns.Copy(rr))
	}
}

// Remove deletes the records of name with type qtype, or all of its records for qtype 0. A name left with no
// records does not exist any more (NXDOMAIN).
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = canon(name)
	if qtype == 0 {
		delete(s.records, name)
		return
	}
	var keep []dns.RR
	for _, rr := range s.records[name] {
		if rr.Header().Rrtype != qtype {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(s.records, name)
		return
	}
	s.records[name] = keep
}

// Fail makes queries for name and qtype (0: any type) fail with f; FailNone clears it. A failure also
// applies when name is reached through a CNAME.
func (s *Server) Fail(name string, qtype uint16, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := failKey{canon(name), qtype}
	if f == FailNone {
		delete(s.fails, k)
		return
	}
	s.fails[k] = f
}

// SetSecure marks name and every name under it as DNSSEC-secure (AD bit set in answers to clients that ask
// with DO or AD) or insecure. The longest marked suffix decides, so an insecure island can sit inside a secure
// zone. Names under no mark are insecure. An answer is secure only if every name in its CNAME chain is.
func (s *Server) SetSecure(name string, secure bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secure[canon(name)] = secure
}

// SetChaseCNAME controls whether the server follows CNAMEs itself (the default, as a recursive resolver
// does) or answers with the CNAME record alone, leaving the client to query the target.
func (s *Server) SetChaseCNAME(chase bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noChase = !chase
}

// Queries returns the queries received so far, in arrival order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// QueryCount returns how many queries for name and qtype (0: any type) were received.
func (s *Server) QueryCount(name string, qtype uint16) int {
	name = canon(name)
	n := 0
	for _, q := range s.Queries() {
		if q.Name == name && (qtype == 0 || q.Type == qtype) {
			n++
		}
	}
	return n
}

// WaitQuery blocks until a query for name and qtype (0: any type) has been received, or ctx ends.
func (s *Server) WaitQuery(ctx context.Context, name string, qtype uint16) error {
	return s.WaitQueries(ctx, name, qtype, 1)
}

// WaitQueries blocks until n queries for name and qtype (0: any type) have been received, or ctx ends. A
// query the client sent may reach the server after the client gave up on it, so a test counting what was
// sent waits here rather than reading QueryCount at once.
func (s *Server) WaitQueries(ctx context.Context, name string, qtype uint16, n int) error {
	for {
		s.mu.Lock()
		arrived := s.arrived
		s.mu.Unlock()
		got := s.QueryCount(name, qtype)
		if got >= n {
			return nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return fmt.Errorf("dnstest: waiting for %d queries for %s, %d arrived: %w", n, name, got, ctx.Err())
		}
	}
}

func canon(name string) string { return dns.Fqdn(strings.ToLower(name)) }

func (s *Server) serveUDP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, "udp") }
func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, "tcp") }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg, network string) {
	resp, drop := s.answer(req, network)
	if drop {
		return
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// maxChase bounds CNAME following in the server, like a recursive resolver's limit.
const maxChase = 16

func (s *Server) answer(req *dns.Msg, network string) (resp *dns.Msg, drop bool) {
	resp = new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return resp, false
	}
	q := req.Question[0]
	name := canon(q.Name)
	opt := req.IsEdns0()
	do := opt != nil && opt.Do()
	if opt != nil {
		resp.SetEdns0(opt.UDPSize(), do)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, Query{Name: name, Type: q.Qtype, Net: network, DO: do, RD: req.RecursionDesired})
	close(s.arrived)
	s.arrived = make(chan struct{})

	secure := true
	seen := map[string]bool{}
	for hop := 0; ; hop++ {
		if f := s.failureLocked(name, q.Qtype); f != FailNone {
			if f == FailBogus && req.CheckingDisabled {
				secure = false
				f = FailNone
			}
			switch f {
			case FailBogus:
				resp.Answer = nil
				resp.Rcode = dns.RcodeServerFailure
				if ropt := resp.IsEdns0(); ropt != nil {
					ropt.Option = append(ropt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus})
				}
				return resp, false
			case FailDrop:
				return nil, true
			case FailServFail:
				resp.Answer = nil
				resp.Rcode = dns.RcodeServerFailure
				return resp, false
			case FailRefused:
				resp.Answer = nil
				resp.Rcode = dns.RcodeRefused
				return resp, false
			case FailNXDomain:
				resp.Rcode = dns.RcodeNameError
				resp.Ns = s.soaLocked(name)
				resp.AuthenticatedData = secure && s.secureLocked(name) && (do || req.AuthenticatedData)
				return resp, false
			}
		}
		secure = secure && s.secureLocked(name)
		rrs, exists := s.records[name]
		if !exists {
			resp.Rcode = dns.RcodeNameError
			break
		}
		var cname *dns.CNAME
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if cname == nil || q.Qtype == dns.TypeCNAME || q.Qtype == dns.TypeANY {
			break
		}
		resp.Answer = append(resp.Answer, dns.Copy(cname))
		seen[name] = true
		target := canon(cname.Target)
		if seen[target] || hop >= maxChase {
			// A recursive resolver gives up on a CNAME loop with SERVFAIL.
			resp.Answer = nil
			resp.Rcode = dns.RcodeServerFailure
			break
		}
		if s.noChase {
			break
		}
		name = target
	}
	if resp.Rcode == dns.RcodeNameError || (resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 0) ||
		(resp.Rcode == dns.RcodeSuccess && !s.noChase && !answersType(resp.Answer, q.Qtype)) {
		// RFC 2308 Section 3: a negative answer carries the SOA of the zone, whose TTL and MINIMUM give the
		// negative caching TTL; after a CNAME chain (RFC 2308 Section 2.2), the SOA of the chain's last name.
		resp.Ns = s.soaLocked(name)
	}
	resp.AuthenticatedData = secure && (do || req.AuthenticatedData) && resp.Rcode != dns.RcodeServerFailure
	return resp, false
}

// answersType tells whether rrs hold a record of type qtype (any record for ANY).
func answersType(rrs []dns.RR, qtype uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype || qtype == dns.TypeANY {
			return true
		}
	}
	return false
}

// soaLocked returns the SOA record added for name or its closest ancestor, if any, for the authority section
// of a negative answer.
func (s *Server) soaLocked(name string) []dns.RR {
	for n := name; ; {
		for _, rr := range s.records[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return []dns.RR{dns.Copy(rr)}
			}
		}
		if n == "." {
			return nil
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
}

func (s *Server) failureLocked(name string, qtype uint16) Failure {
	if f, ok := s.fails[failKey{name, qtype}]; ok {
		return f
	}
	return s.fails[failKey{name, 0}]
}

func (s *Server) secureLocked(name string) bool {
	for n := name; ; {
		if v, ok := s.secure[n]; ok {
			return v
		}
		if n == "." {
			return false
		}
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
}
