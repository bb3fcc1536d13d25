package simnet

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
)

// ttl is the TTL of every record added through the helpers.
const ttl = 300

// maxCNAMEHops bounds CNAME chasing; a longer chain (or a loop) is answered with SERVFAIL.
const maxCNAMEHops = 8

// Failure is an injected DNS failure for one name and type.
type Failure int

// Failures. Timeout drops the query without an answer, on UDP and TCP alike.
const (
	None Failure = iota
	ServFail
	NXDomain
	Refused
	Timeout
)

func (f Failure) String() string {
	switch f {
	case None:
		return "none"
	case ServFail:
		return "SERVFAIL"
	case NXDomain:
		return "NXDOMAIN"
	case Refused:
		return "REFUSED"
	case Timeout:
		return "timeout"
	}
	return fmt.Sprintf("Failure(%d)", int(f))
}

// Query is one question the DNS server received. Name is lower case without the trailing dot.
type Query struct {
	Name string
	Type uint16
}

func (q Query) String() string { return dns.TypeToString[q.Type] + " " + q.Name }

type failKey struct {
	name  string
	rtype uint16
}

// DNS is the zone data and query log of a Net's DNS server. Names may be given with or without the trailing
// dot, in any case, with A-labels or U-labels. All methods are safe to call while the server runs.
type DNS struct {
	mu      sync.Mutex
	rrs     map[string][]dns.RR // owner name (canonical FQDN) to records
	fail    map[failKey]Failure
	secure  map[string]DNSSEC
	queries []Query
	sig     signal
}

func newDNS() *DNS {
	return &DNS{
		rrs:    make(map[string][]dns.RR),
		fail:   make(map[failKey]Failure),
		secure: make(map[string]DNSSEC),
	}
}

// canon returns the canonical owner-name form: lower-case A-labels with the trailing dot.
func canon(name string) string {
	if d, err := address.ParseDomain(name); err == nil {
		return d.FQDN()
	}
	return strings.ToLower(dns.Fqdn(name))
}

func hdr(name string, rtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: canon(name), Rrtype: rtype, Class: dns.ClassINET, Ttl: ttl}
}

// AddRR adds records as they are.
func (d *DNS) AddRR(rrs ...dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rr := range rrs {
		rr = dns.Copy(rr)
		rr.Header().Name = canon(rr.Header().Name)
		d.rrs[rr.Header().Name] = append(d.rrs[rr.Header().Name], rr)
	}
}

// AddZone adds the records of a master-file fragment ("example.com. 300 IN MX 10 mx1.example.com.").
func (d *DNS) AddZone(text string) error {
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("simnet: zone: %w", err)
	}
	d.AddRR(rrs...)
	return nil
}

// AddA adds an A record, or an AAAA record when ip is IPv6.
func (d *DNS) AddA(name string, ip netip.Addr) {
	if ip.Is4() || ip.Is4In6() {
		d.AddRR(&dns.A{Hdr: hdr(name, dns.TypeA), A: net.IP(ip.Unmap().AsSlice())})
		return
	}
	d.AddRR(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.IP(ip.AsSlice())})
}

// AddMX adds an MX record for domain.
func (d *DNS) AddMX(domain, host string, pref uint16) {
	d.AddRR(&dns.MX{Hdr: hdr(domain, dns.TypeMX), Preference: pref, Mx: canon(host)})
}

// SetNullMX replaces domain's MX records with the null MX "0 ." (RFC 7505 Section 3).
func (d *DNS) SetNullMX(domain string) {
	d.Remove(domain, dns.TypeMX)
	d.AddRR(&dns.MX{Hdr: hdr(domain, dns.TypeMX), Preference: 0, Mx: "."})
}

// AddTXT adds one TXT record made of the given character-strings, each the exact bytes to publish (any byte,
// quotes and backslashes included). Strings longer than 255 octets are split, as a zone file compiler would.
func (d *DNS) AddTXT(name string, strs ...string) {
	var parts []string
	for _, s := range strs {
		for len(s) > 255 {
			parts = append(parts, presentTXT(s[:255]))
			s = s[255:]
		}
		parts = append(parts, presentTXT(s))
	}
	d.AddRR(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: parts})
}

// presentTXT writes wire bytes in miekg/dns's presentation form, which its packer decodes: a quote or
// backslash escaped with a backslash, a byte outside printable ASCII as \DDD.
func presentTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// AddCNAME makes name an alias of target.
func (d *DNS) AddCNAME(name, target string) {
	d.AddRR(&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: canon(target)})
}

// AddTLSA adds a TLSA record (RFC 6698 Section 2.1), name being for example "_25._tcp.mx1.example.com".
func (d *DNS) AddTLSA(name string, t dnsx.TLSA) {
	d.AddRR(&dns.TLSA{
		Hdr:          hdr(name, dns.TypeTLSA),
		Usage:        t.Usage,
		Selector:     t.Selector,
		MatchingType: t.MatchingType,
		Certificate:  hex.EncodeToString(t.Data),
	})
}

// AddDANE publishes at _port._tcp.host the TLSA record of the given usage, selector and matching type for
// cert (RFC 6698 Section 2.1, RFC 7672 Section 2.2.3). port 0 means 25.
func (d *DNS) AddDANE(host string, port int, usage, selector, matchingType uint8, cert *x509.Certificate) dnsx.TLSA {
	if port == 0 {
		port = 25
	}
	t := dane.Make(usage, selector, matchingType, cert)
	d.AddTLSA(dane.QueryName(host, port), t)
	return t
}

// Remove deletes the records of type rrtype at name; dns.TypeANY deletes all of them.
func (d *DNS) Remove(name string, rrtype uint16) {
	name = canon(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	var keep []dns.RR
	for _, rr := range d.rrs[name] {
		if rrtype != dns.TypeANY && rr.Header().Rrtype != rrtype {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(d.rrs, name)
		return
	}
	d.rrs[name] = keep
}

// SetFailure makes queries for (name, rrtype) fail with f; dns.TypeANY applies to every type of the name.
// None clears it. A failure also applies when name is reached through a CNAME.
func (d *DNS) SetFailure(name string, rrtype uint16, f Failure) {
	k := failKey{canon(name), rrtype}
	d.mu.Lock()
	defer d.mu.Unlock()
	if f == None {
		delete(d.fail, k)
		return
	}
	d.fail[k] = f
}

// DNSSEC is the validation status the server reports for a name, as a validating resolver would after
// checking signatures (RFC 4033 Section 5).
type DNSSEC int

// DNSSEC statuses. Insecure answers have no AD bit; Secure answers have it; Bogus answers are SERVFAIL with
// the Extended DNS Error "DNSSEC Bogus" (RFC 8914 Section 4.7), unless the query sets CD (checking disabled,
// RFC 4035 Section 3.2.2), which gets the records without the AD bit.
const (
	Insecure DNSSEC = iota
	Secure
	Bogus
)

func (s DNSSEC) String() string {
	switch s {
	case Insecure:
		return "insecure"
	case Secure:
		return "secure"
	case Bogus:
		return "bogus"
	}
	return fmt.Sprintf("DNSSEC(%d)", int(s))
}

// SetSecure sets whether answers for name and every name below it are DNSSEC-secure, that is carry the AD bit
// (RFC 4035 Section 3.2.3). The setting of the closest enclosing name wins, so a signed zone can hold an
// insecure subtree. Names are insecure by default. An answer is secure only when every name of its CNAME
// chain is.
func (d *DNS) SetSecure(name string, secure bool) {
	st := Insecure
	if secure {
		st = Secure
	}
	d.SetDNSSEC(name, st)
}

// SetDNSSEC sets the DNSSEC status of name and every name below it (the closest enclosing setting wins). An
// answer whose CNAME chain reaches a bogus name is bogus; otherwise it is secure only if every name is.
func (d *DNS) SetDNSSEC(name string, st DNSSEC) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.secure[canon(name)] = st
}

// Queries returns the questions received so far, in order.
func (d *DNS) Queries() []Query {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Query(nil), d.queries...)
}

// ResetQueries clears the query log.
func (d *DNS) ResetQueries() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = nil
}

// Queried reports whether the server received the question (name, rrtype).
func (d *DNS) Queried(name string, rrtype uint16) bool {
	q := Query{strings.TrimSuffix(canon(name), "."), rrtype}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, got := range d.queries {
		if got == q {
			return true
		}
	}
	return false
}

// WaitQuery blocks until the server has received the question (name, rrtype) or ctx is done.
func (d *DNS) WaitQuery(ctx context.Context, name string, rrtype uint16) error {
	q := Query{strings.TrimSuffix(canon(name), "."), rrtype}
	return waitFor(ctx, &d.mu, &d.sig, func() (bool, string) {
		for _, got := range d.queries {
			if got == q {
				return true, ""
			}
		}
		return false, "DNS query " + q.String()
	})
}

func (d *DNS) statusLocked(name string) DNSSEC {
	for {
		if s, ok := d.secure[name]; ok {
			return s
		}
		if name == "." {
			return Insecure
		}
		_, rest, _ := strings.Cut(name, ".")
		if rest == "" {
			rest = "."
		}
		name = rest
	}
}

// existsLocked reports whether name owns records or is an empty non-terminal (has names below it), which
// distinguishes NODATA from NXDOMAIN (RFC 8020).
func (d *DNS) existsLocked(name string) bool {
	if len(d.rrs[name]) > 0 {
		return true
	}
	suffix := "." + name
	if name == "." {
		return len(d.rrs) > 0
	}
	for owner := range d.rrs {
		if strings.HasSuffix(owner, suffix) {
			return true
		}
	}
	return false
}

func (d *DNS) failureLocked(name string, rrtype uint16) Failure {
	if f, ok := d.fail[failKey{name, rrtype}]; ok {
		return f
	}
	return d.fail[failKey{name, dns.TypeANY}]
}

// answerLocked fills m for the question; it returns false when the query is to be dropped, and bogus when a
// validating resolver would refuse the answer (the records are filled in for a query with CD set).
func (d *DNS) answerLocked(m *dns.Msg, q dns.Question) (reply, bogus bool) {
	name := strings.ToLower(q.Name)
	secure := true
	defer func() {
		if bogus {
			m.AuthenticatedData = false
		}
	}()
	for hop := 0; ; hop++ {
		if hop > maxCNAMEHops {
			m.Answer = nil
			m.Rcode = dns.RcodeServerFailure
			return true, bogus
		}
		st := d.statusLocked(name)
		secure = secure && st == Secure
		bogus = bogus || st == Bogus
		switch d.failureLocked(name, q.Qtype) {
		case Timeout:
			return false, false
		case ServFail:
			m.Answer = nil
			m.Rcode = dns.RcodeServerFailure
			return true, bogus
		case Refused:
			m.Answer = nil
			m.Rcode = dns.RcodeRefused
			return true, bogus
		case NXDomain:
			m.Rcode = dns.RcodeNameError
			m.AuthenticatedData = secure
			return true, bogus
		}
		if !d.existsLocked(name) {
			m.Rcode = dns.RcodeNameError
			m.AuthenticatedData = secure
			return true, bogus
		}
		rrs := d.rrs[name]
		if q.Qtype != dns.TypeCNAME {
			var cname *dns.CNAME
			for _, rr := range rrs {
				if c, ok := rr.(*dns.CNAME); ok {
					cname = c
					break
				}
			}
			if cname != nil {
				m.Answer = append(m.Answer, dns.Copy(cname))
				name = cname.Target
				continue
			}
		}
		for _, rr := range rrs {
			if q.Qtype == dns.TypeANY || rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		m.AuthenticatedData = secure
		return true, bogus
	}
}

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	// The gateway talks to this server as to its recursive, validating resolver.
	m.RecursionAvailable = true
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	d.mu.Lock()
	d.queries = append(d.queries, Query{strings.TrimSuffix(strings.ToLower(q.Name), "."), q.Qtype})
	d.sig.broadcast()
	reply, bogus := d.answerLocked(m, q)
	d.mu.Unlock()
	if !reply {
		return
	}
	if m.Rcode == dns.RcodeNameError || (m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0) {
		// RFC 2308 Section 3: a negative answer carries the zone's SOA, whose TTL and MINIMUM give the time a
		// resolver may keep it.
		m.Ns = append(m.Ns, negativeSOA(q.Name))
	}
	if bogus && !req.CheckingDisabled {
		// A validating resolver refuses data that fails validation (RFC 4035 Section 5.5).
		m.Answer, m.Ns, m.Rcode = nil, nil, dns.RcodeServerFailure
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(uint16(size), opt.Do())
		if bogus && !req.CheckingDisabled {
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus, ExtraText: "simnet: " + q.Name + " is bogus"})
		}
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// negativeSOA is the SOA of the zone a negative answer for name comes from: the simulated internet has no
// delegation, so the zone is taken to be the last two labels of the name.
func negativeSOA(name string) dns.RR {
	labels := dns.SplitDomainName(canon(name))
	zone := "."
	if len(labels) >= 2 {
		zone = dns.Fqdn(labels[len(labels)-2] + "." + labels[len(labels)-1])
	}
	return &dns.SOA{Hdr: hdr(zone, dns.TypeSOA), Ns: "ns." + zone, Mbox: "hostmaster." + zone,
		Serial: 1, Refresh: 7200, Retry: 3600, Expire: 1209600, Minttl: ttl}
}

// lookupHost returns the addresses of host from the zone data, following CNAMEs, in record order.
func (d *DNS) lookupHost(host string) []netip.Addr {
	name := canon(host)
	d.mu.Lock()
	defer d.mu.Unlock()
	for range maxCNAMEHops {
		var ips []netip.Addr
		var target string
		for _, rr := range d.rrs[name] {
			switch rr := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(rr.A); ok {
					ips = append(ips, ip.Unmap())
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(rr.AAAA); ok {
					ips = append(ips, ip)
				}
			case *dns.CNAME:
				target = rr.Target
			}
		}
		if target == "" {
			return ips
		}
		name = target
	}
	return nil
}
