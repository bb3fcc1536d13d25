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
// /etc/resolv.conf. A Client is safe for concurrent use and keeps no cache.
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
}

var _ Resolver = (*Client)(nil)

// LookupMX implements Resolver.
func (c *Client) LookupMX(ctx context.Context, name string) ([]MX, Result, error) {
	rrs, res, err := c.lookup(ctx, name, dns.TypeMX)
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
	rrs, res, err := c.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, res, err
	}
	var out []string
	for _, rr := range rrs {
		// RFC 7208 Section 3.3, RFC 8461 Section 3.1: the strings of one record are joined without separators.
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, res, nil
}

// LookupTLSA implements Resolver.
func (c *Client) LookupTLSA(ctx context.Context, name string) ([]TLSA, Result, error) {
	rrs, res, err := c.lookup(ctx, name, dns.TypeTLSA)
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
// exist. If one type fails temporarily and the other has addresses, those addresses are returned; Secure is
// then that of the answer used. No addresses and a temporary failure is a temporary failure.
func (c *Client) LookupIP(ctx context.Context, host string) ([]netip.Addr, Result, error) {
	type answer struct {
		rrs []dns.RR
		res Result
		err error
	}
	var v6, v4 answer
	var wg sync.WaitGroup
	wg.Go(func() { v6.rrs, v6.res, v6.err = c.lookup(ctx, host, dns.TypeAAAA) })
	wg.Go(func() { v4.rrs, v4.res, v4.err = c.lookup(ctx, host, dns.TypeA) })
	wg.Wait()

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
func (c *Client) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, Result, error) {
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
		resp, err := c.exchange(ctx, cur, qtype)
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

// exchange sends one query, trying the servers in turn, and returns the first NOERROR or NXDOMAIN answer.
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
			resp, err := c.exchangeOne(ctx, srv, name, qtype)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", srv, err))
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return resp, nil
			default:
				// SERVFAIL (also a validating resolver's answer for bogus data), REFUSED and the rest: the
				// next server may do better.
				errs = append(errs, fmt.Errorf("%s: %w", srv, RcodeError(resp.Rcode)))
			}
		}
	}
	return nil, errors.Join(errs...)
}

// exchangeOne asks one server over UDP, and again over TCP if the UDP answer was truncated.
func (c *Client) exchangeOne(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
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
