package dnsx

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults for the zero Client.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultAttempts   = 2
	DefaultResolvConf = "/etc/resolv.conf"
	// DefaultServer is used when the resolver configuration cannot be read or lists no servers.
	DefaultServer = "127.0.0.1:53"

	// maxCNAMEHops bounds the CNAME chain a lookup follows, across the answers of all its queries.
	maxCNAMEHops = 8
	// ednsUDPSize is the EDNS0 payload size we advertise (the DNS flag day 2020 value, avoiding fragmentation).
	ednsUDPSize = 1232
)

// Client is a Resolver that asks recursive name servers with miekg/dns. The zero value reads
// /etc/resolv.conf and keeps no cache; with Cache set, answers are kept for their TTL (see Cache). A Client
// is safe for concurrent use.
type Client struct {
	// Servers are "ip:port" addresses of recursive resolvers, tried in order, moving to the next on failure.
	// Empty: the nameservers of ResolvConf, or DefaultServer if it cannot be read.
	Servers []string
	// Timeout bounds each query to one server; 0 means DefaultTimeout.
	Timeout time.Duration
	// Attempts is how many times the server list is gone through before giving up; 0 means DefaultAttempts.
	Attempts int
	// ResolvConf is the resolver configuration file read when Servers is empty; "" means DefaultResolvConf.
	// It is read at every lookup, so changes take effect without a restart.
	ResolvConf string
	// Validating lists the resolvers (addresses or prefixes) trusted to validate DNSSEC: only their AD bit
	// makes an answer secure, and only their SERVFAIL can be bogus. Nil means loopback resolvers only
	// (RFC 7672 Section 2.1.1: a validating resolver reached over a trusted channel). An empty, non-nil
	// slice trusts none.
	Validating []netip.Prefix
	// Cache, when set, keeps answers for their TTL (RFC 2308 negative caching, failures briefly). Nil asks
	// the servers at every lookup.
	Cache *Cache

	stats dnssecCounters
}

// DNSSECStats counts answers by what they said about DNSSEC, since the Client was made. They let `status`
// warn when DANE is on but the resolver never validates.
type DNSSECStats struct {
	// Trusted counts answers from resolvers listed as validating; Authenticated those of them with the AD bit.
	Trusted, Authenticated uint64
	// UntrustedAD counts answers with the AD bit from resolvers not listed as validating (the bit was ignored).
	UntrustedAD uint64
	// Bogus counts SERVFAIL answers classified as DNSSEC validation failures.
	Bogus uint64
}

type dnssecCounters struct {
	trusted, authenticated, untrustedAD, bogus atomic.Uint64
}

// Stats returns the DNSSEC counters.
func (c *Client) Stats() DNSSECStats {
	return DNSSECStats{
		Trusted:       c.stats.trusted.Load(),
		Authenticated: c.stats.authenticated.Load(),
		UntrustedAD:   c.stats.untrustedAD.Load(),
		Bogus:         c.stats.bogus.Load(),
	}
}

// Trusted reports whether server ("ip:port") is listed as a validating resolver whose AD bit is trusted.
func (c *Client) Trusted(server string) bool {
	ap, err := netip.ParseAddrPort(server)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	if c.Validating == nil {
		return ip.IsLoopback()
	}
	for _, p := range c.Validating {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// knownStub names the loopback resolvers known to forward queries, and the upstream resolver's AD bit with
// them, without validating DNSSEC themselves.
func knownStub(ip netip.Addr) (string, bool) {
	if ip == netip.AddrFrom4([4]byte{127, 0, 0, 11}) {
		return "Docker's embedded DNS server", true
	}
	return "", false
}

// StubValidator is a resolver trusted to validate (by default as a loopback resolver) that is a known
// forwarding stub: its AD bit is only as good as the resolver behind it and the network path to it, which
// RFC 7672 Section 2.1.1 asks to be trusted.
type StubValidator struct {
	Server string // "ip:port"
	Name   string // what it is, e.g. "Docker's embedded DNS server"
}

// StubValidators returns the known forwarding stubs among the resolvers in use when they are the only ones
// trusted to validate, and nil otherwise. Status and start-up warn with it when DANE is on.
func (c *Client) StubValidators() []StubValidator {
	var stubs []StubValidator
	for _, srv := range c.servers() {
		if !c.Trusted(srv) {
			continue
		}
		ap, err := netip.ParseAddrPort(srv)
		if err != nil {
			continue
		}
		name, ok := knownStub(ap.Addr().Unmap())
		if !ok {
			return nil
		}
		stubs = append(stubs, StubValidator{Server: srv, Name: name})
	}
	return stubs
}

// ParseValidating parses resolver addresses or prefixes ("127.0.0.1", "10.0.0.0/8", "::1") as listed in
// the configuration.
func ParseValidating(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	var errs []error
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("validating resolver %q: not an IP address or prefix", s))
			continue
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, errors.Join(errs...)
}

var _ Resolver = (*Client)(nil)

// LookupMX implements Resolver.
func (c *Client) LookupMX(ctx context.Context, name string) ([]MX, Result, error) {
	rrs, res, err := c.lookup(ctx, name, dns.TypeMX, fromNetwork)
	if err != nil {
		return nil, res, err
	}
	var out []MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		// RFC 7505 Section 3: the null MX is "0 ."; its host becomes "".
		out = append(out, MX{Host: trimName(mx.Mx), Pref: mx.Preference})
	}
	return out, res, nil
}

// LookupTXT implements Resolver.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, Result, error) {
	rrs, res, err := c.lookup(ctx, name, dns.TypeTXT, fromNetwork)
	if err != nil {
		return nil, res, err
	}
	return txtStrings(rrs), res, nil
}

// CachedTXT implements CachedTXTResolver: LookupTXT answered from the cache alone. Without a Cache, or when
// the cache holds no unexpired answer for a name of the chain, the error wraps ErrNotCached.
func (c *Client) CachedTXT(name string) ([]string, Result, error) {
	if c.Cache == nil {
		return nil, Result{}, ErrNotCached
	}
	rrs, res, err := c.lookup(context.Background(), name, dns.TypeTXT, fromCacheOnly)
	if err != nil {
		return nil, res, err
	}
	return txtStrings(rrs), res, nil
}

func txtStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		// RFC 7208 Section 3.3, RFC 8461 Section 3.1: the strings of one record are joined without separators.
		// miekg/dns gives each string in presentation form (a quote or backslash escaped with "\", a byte
		// outside printable ASCII as "\DDD"); the record parsers must see the published bytes.
		strs := rr.(*dns.TXT).Txt
		if len(strs) == 1 {
			out = append(out, TXTWire(strs[0]))
			continue
		}
		var b strings.Builder
		for _, s := range strs {
			b.WriteString(TXTWire(s))
		}
		out = append(out, b.String())
	}
	return out
}

// TXTWire decodes one TXT character-string from miekg/dns's presentation form to the bytes on the wire:
// "\DDD" (three decimal digits) is the byte DDD, "\" followed by any other character is that character.
func TXTWire(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		i++
		if i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			if n := int(s[i]-'0')*100 + int(s[i+1]-'0')*10 + int(s[i+2]-'0'); n <= 0xff {
				b = append(b, byte(n))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// LookupTLSA implements Resolver.
func (c *Client) LookupTLSA(ctx context.Context, name string) ([]TLSA, Result, error) {
	rrs, res, err := c.lookup(ctx, name, dns.TypeTLSA, fromNetwork)
	if err != nil {
		return nil, res, err
	}
	var out []TLSA
	for _, rr := range rrs {
		t := rr.(*dns.TLSA)
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			// RFC 7672 Section 2.1.2: a malformed TLSA RRset is a lookup failure, never "no TLSA".
			return nil, res, fmt.Errorf("%w: TLSA %s: malformed data: %w", ErrTemporary, name, err)
		}
		out = append(out, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return out, res, nil
}

// LookupIP implements Resolver. AAAA and A are asked concurrently. NXDOMAIN for either means the name does not
// exist. A bogus answer for either (ErrBogus) makes the lookup bogus. If one type fails temporarily and the
// other has addresses, those addresses are returned; Secure is then that of the answer used. No addresses and
// a temporary failure is a temporary failure.
func (c *Client) LookupIP(ctx context.Context, host string) ([]netip.Addr, Result, error) {
	type answer struct {
		rrs []dns.RR
		res Result
		err error
	}
	var v6, v4 answer
	var wg sync.WaitGroup
	wg.Go(func() { v6.rrs, v6.res, v6.err = c.lookup(ctx, host, dns.TypeAAAA, fromNetwork) })
	wg.Go(func() { v4.rrs, v4.res, v4.err = c.lookup(ctx, host, dns.TypeA, fromNetwork) })
	wg.Wait()

	// RFC 7672 Section 2.1.2: a bogus A or AAAA RRset makes the host unusable, even when the other family
	// answers; otherwise a forged record of one family would hide behind the addresses of the other.
	for _, a := range []answer{v6, v4} {
		if errors.Is(a.err, ErrBogus) {
			return nil, a.res, a.err
		}
	}
	for _, a := range []answer{v6, v4} {
		if errors.Is(a.err, ErrNotFound) {
			return nil, a.res, a.err
		}
	}
	var addrs []netip.Addr
	for _, rr := range v6.rrs {
		if ip, ok := netip.AddrFromSlice(rr.(*dns.AAAA).AAAA.To16()); ok {
			addrs = append(addrs, ip)
		}
	}
	for _, rr := range v4.rrs {
		if ip, ok := netip.AddrFromSlice(rr.(*dns.A).A.To4()); ok {
			addrs = append(addrs, ip)
		}
	}
	switch {
	case v6.err == nil && v4.err == nil:
		res := Result{Secure: v6.res.Secure && v4.res.Secure, CNAMEs: v4.res.CNAMEs}
		if len(res.CNAMEs) == 0 {
			res.CNAMEs = v6.res.CNAMEs
		}
		return addrs, res, nil
	case len(addrs) == 0:
		return nil, Result{}, errors.Join(v6.err, v4.err)
	case v6.err == nil:
		return addrs, v6.res, nil
	default:
		return addrs, v4.res, nil
	}
}

// lookup asks for name/qtype, follows CNAMEs (re-asking for the target when an answer stops at a CNAME) and
// returns the records of qtype owned by the final name. Result.Secure is true only if every answer used had
// the AD bit (RFC 7672 Section 2.1.3: an insecure link makes the chain insecure).
func (c *Client) lookup(ctx context.Context, name string, qtype uint16, from source) ([]dns.RR, Result, error) {
	tname := dns.TypeToString[qtype]
	fqdn := dns.Fqdn(strings.ToLower(name))
	if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." {
		// A name that cannot be written in DNS cannot exist.
		return nil, Result{}, fmt.Errorf("%w: %s %q: invalid domain name", ErrNotFound, tname, name)
	}
	res := Result{Secure: true}
	seen := map[string]bool{fqdn: true}
	cur := fqdn
	for {
		resp, err := c.query(ctx, cur, qtype, from)
		if errors.Is(err, ErrNotCached) {
			return nil, Result{}, err
		}
		if errors.Is(err, ErrBogus) {
			return nil, Result{CNAMEs: res.CNAMEs}, fmt.Errorf("%s %s: %w", tname, name, err)
		}
		if err != nil {
			return nil, Result{CNAMEs: res.CNAMEs}, fmt.Errorf("%w: %s %s: %w", ErrTemporary, tname, name, err)
		}
		res.Secure = res.Secure && resp.AuthenticatedData

		// Walk the CNAME chain in the answer section from cur, in whatever order the records come.
		cnames := make(map[string]string)
		for _, rr := range resp.Answer {
			if cn, ok := rr.(*dns.CNAME); ok {
				cnames[strings.ToLower(cn.Hdr.Name)] = strings.ToLower(dns.Fqdn(cn.Target))
			}
		}
		start := cur
		for {
			next, ok := cnames[cur]
			if !ok {
				break
			}
			if seen[next] {
				return nil, res, fmt.Errorf("%w: %s %s: %w at %s", ErrTemporary, tname, name, errCNAMELoop, trimName(next))
			}
			if len(res.CNAMEs) == maxCNAMEHops {
				return nil, res, fmt.Errorf("%w: %s %s: %w (more than %d)", ErrTemporary, tname, name, errCNAMELong, maxCNAMEHops)
			}
			seen[next] = true
			res.CNAMEs = append(res.CNAMEs, trimName(next))
			cur = next
		}

		switch resp.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			// RFC 6604 Section 3: after CNAMEs the rcode is about the last name of the chain.
			return nil, res, fmt.Errorf("%w: %s %s", ErrNotFound, tname, name)
		default:
			// exchange returns only NOERROR and NXDOMAIN answers.
			return nil, res, fmt.Errorf("%w: %s %s: %w", ErrTemporary, tname, name, RcodeError(resp.Rcode))
		}

		var rrs []dns.RR
		for _, rr := range resp.Answer {
			if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, cur) {
				rrs = append(rrs, rr)
			}
		}
		if len(rrs) > 0 || cur == start {
			// Records, or NODATA: no records of the type and no error.
			return rrs, res, nil
		}
		// The answer stopped at a CNAME: ask for the target ourselves.
	}
}

// source says where lookup may take its answers from.
type source int

const (
	fromNetwork   source = iota // the cache if it has the answer, else the servers
	fromCacheOnly               // the cache only; ErrNotCached otherwise
)

// query is exchange through the cache, when there is one.
func (c *Client) query(ctx context.Context, name string, qtype uint16, from source) (*dns.Msg, error) {
	if from == fromCacheOnly {
		return c.Cache.peek(cacheKey{name: name, qtype: qtype})
	}
	if c.Cache == nil {
		return c.exchange(ctx, name, qtype)
	}
	return c.Cache.get(ctx, cacheKey{name: name, qtype: qtype}, func() (*dns.Msg, error) {
		return c.exchange(ctx, name, qtype)
	})
}

// exchange sends one query, trying the servers in turn, and returns the first NOERROR or NXDOMAIN answer.
// The AD bit of an answer from a server not trusted to validate is cleared. As soon as a trusted validating
// server calls the answer bogus, exchange stops and the error wraps ErrBogus: no other server is asked.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	servers := c.servers()
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	var errs []error
	for range attempts {
		for _, srv := range servers {
			if err := ctx.Err(); err != nil {
				return nil, errors.Join(append(errs, err)...)
			}
			resp, err := c.exchangeOne(ctx, srv, name, qtype, false)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", srv, err))
				continue
			}
			trusted := c.Trusted(srv)
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				if trusted {
					c.stats.trusted.Add(1)
					if resp.AuthenticatedData {
						c.stats.authenticated.Add(1)
					}
				} else if resp.AuthenticatedData {
					// RFC 7672 Section 2.1.1 (DANE-1): the AD bit of a resolver we do not trust proves nothing.
					c.stats.untrustedAD.Add(1)
					resp.AuthenticatedData = false
				}
				return resp, nil
			case dns.RcodeServerFailure:
				if trusted && c.bogus(ctx, srv, name, qtype, resp) {
					// RFC 7672 Section 2.1.2: data a trusted validator calls bogus is unusable. Asking the
					// next resolver would be a downgrade: a resolver that does not validate returns the
					// forged records, insecure, and DANE would silently give way to opportunistic TLS.
					c.stats.bogus.Add(1)
					errs = append(errs, fmt.Errorf("%s: %w: DNSSEC validation failed", srv, RcodeError(resp.Rcode)))
					return nil, fmt.Errorf("%w: %w", ErrBogus, errors.Join(errs...))
				}
				errs = append(errs, fmt.Errorf("%s: %w", srv, RcodeError(resp.Rcode)))
			default:
				// REFUSED and the rest: the next server may do better.
				errs = append(errs, fmt.Errorf("%s: %w", srv, RcodeError(resp.Rcode)))
			}
		}
	}
	return nil, errors.Join(errs...)
}

// bogus tells whether a validating resolver's SERVFAIL is a DNSSEC failure (RFC 4033 Section 5: bogus or
// indeterminate) rather than an unreachable or broken authority. An Extended DNS Error (RFC 8914) decides
// when present; otherwise the question is asked again with checking disabled (RFC 4035 Section 3.2.2): an
// answer then means only validation stood in the way.
func (c *Client) bogus(ctx context.Context, server, name string, qtype uint16, resp *dns.Msg) bool {
	if opt := resp.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if ede, ok := o.(*dns.EDNS0_EDE); ok {
				return dnssecEDE(ede.InfoCode)
			}
		}
	}
	cd, err := c.exchangeOne(ctx, server, name, qtype, true)
	return err == nil && (cd.Rcode == dns.RcodeSuccess || cd.Rcode == dns.RcodeNameError)
}

// dnssecEDE reports whether an RFC 8914 info code names a DNSSEC failure (codes 1, 2 and 5 to 12).
func dnssecEDE(code uint16) bool {
	switch code {
	case dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm, dns.ExtendedErrorCodeUnsupportedDSDigestType,
		dns.ExtendedErrorCodeDNSSECIndeterminate, dns.ExtendedErrorCodeDNSBogus,
		dns.ExtendedErrorCodeSignatureExpired, dns.ExtendedErrorCodeSignatureNotYetValid,
		dns.ExtendedErrorCodeDNSKEYMissing, dns.ExtendedErrorCodeRRSIGsMissing,
		dns.ExtendedErrorCodeNoZoneKeyBitSet, dns.ExtendedErrorCodeNSECMissing:
		return true
	}
	return false
}

// exchangeOne asks one server over UDP, and again over TCP if the UDP answer was truncated.
// With checkingDisabled the CD bit asks a validating resolver for the data without validation.
func (c *Client) exchangeOne(ctx context.Context, server, name string, qtype uint16, checkingDisabled bool) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.CheckingDisabled = checkingDisabled
	// RFC 4035 Section 3.2.1: DO asks a validating resolver for the AD bit (and signatures).
	m.SetEdns0(ednsUDPSize, true)

	resp, err := c.roundTrip(ctx, "udp", server, m)
	if err == nil && resp.Truncated {
		// RFC 7766 Section 5: retry a truncated UDP answer over TCP.
		resp, err = c.roundTrip(ctx, "tcp", server, m)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != qtype || !strings.EqualFold(resp.Question[0].Name, name) {
		return nil, errMismatch
	}
	return resp, nil
}

func (c *Client) roundTrip(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dc := &dns.Client{Net: network, Timeout: timeout}
	conn, err := dc.DialContext(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	defer conn.Close()
	// miekg/dns honours the context's deadline but not its cancellation; closing the connection does.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	resp, _, err := dc.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s: %w", network, ctxErr)
		}
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	return resp, nil
}

func (c *Client) servers() []string {
	if len(c.Servers) > 0 {
		return c.Servers
	}
	path := c.ResolvConf
	if path == "" {
		path = DefaultResolvConf
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil || len(cc.Servers) == 0 {
		return []string{DefaultServer}
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out
}

// trimName lower-cases a DNS name and removes the trailing dot; the root "." becomes "".
func trimName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}
