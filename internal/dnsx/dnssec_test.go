package dnsx_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/simnet"
)

func newNet(t *testing.T) *simnet.Net {
	t.Helper()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestADBitTrustedOnlyFromValidatingResolvers_DANE1 shows that the AD bit makes an answer secure only when it
// comes from a resolver listed as validating (loopback by default), never from another one.
func TestADBitTrustedOnlyFromValidatingResolvers_DANE1(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	n.DNS.SetDNSSEC("signed.test", simnet.Secure)
	n.DNS.AddTLSA("_25._tcp.mx.signed.test", dnsx.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)})

	tests := []struct {
		name       string
		validating []netip.Prefix
		wantSecure bool
		wantStats  dnsx.DNSSECStats
	}{
		{"default trusts loopback", nil, true, dnsx.DNSSECStats{Trusted: 1, Authenticated: 1}},
		{"listed resolver", []netip.Prefix{netip.MustParsePrefix(n.Block.String())}, true, dnsx.DNSSECStats{Trusted: 1, Authenticated: 1}},
		{"unlisted resolver", []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}, false, dnsx.DNSSECStats{UntrustedAD: 1}},
		{"none trusted", []netip.Prefix{}, false, dnsx.DNSSECStats{UntrustedAD: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &dnsx.Client{Servers: []string{n.DNSAddr}, Timeout: 10 * time.Second, Validating: tt.validating}
			recs, res, err := c.LookupTLSA(t.Context(), "_25._tcp.mx.signed.test")
			if err != nil || len(recs) != 1 {
				t.Fatalf("LookupTLSA: %v, %v", recs, err)
			}
			if res.Secure != tt.wantSecure {
				t.Errorf("Secure = %v, want %v", res.Secure, tt.wantSecure)
			}
			if got := c.Stats(); got != tt.wantStats {
				t.Errorf("Stats = %+v, want %+v", got, tt.wantStats)
			}
		})
	}
}

// TestBogusDistinguished_DANE2_DANE4 shows the three outcomes a validating resolver gives: secure, insecure
// and bogus (SERVFAIL for a DNSSEC failure, ErrBogus), and that a SERVFAIL for another cause, or from a
// resolver not trusted to validate, is only a temporary failure.
func TestBogusDistinguished_DANE2_DANE4(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	n.DNS.SetDNSSEC("signed.test", simnet.Secure)
	n.DNS.SetDNSSEC("broken.signed.test", simnet.Bogus)
	n.DNS.AddMX("signed.test", "mx.signed.test", 10)
	n.DNS.AddMX("broken.signed.test", "mx.broken.signed.test", 10)
	n.DNS.AddMX("via.signed.test", "mx.signed.test", 10)
	n.DNS.AddCNAME("alias.signed.test", "broken.signed.test")
	n.DNS.AddMX("down.signed.test", "mx.signed.test", 10)
	n.DNS.SetFailure("down.signed.test", dns.TypeMX, simnet.ServFail)
	n.DNS.AddMX("plain.test", "mx.plain.test", 10)

	trusted := &dnsx.Client{Servers: []string{n.DNSAddr}, Timeout: 10 * time.Second, Attempts: 1}
	untrusted := &dnsx.Client{Servers: []string{n.DNSAddr}, Timeout: 10 * time.Second, Attempts: 1, Validating: []netip.Prefix{}}
	tests := []struct {
		name       string
		c          *dnsx.Client
		wantSecure bool
		wantErr    error
		wantBogus  bool
	}{
		{"signed.test", trusted, true, nil, false},
		{"plain.test", trusted, false, nil, false},
		{"broken.signed.test", trusted, false, dnsx.ErrTemporary, true},
		{"alias.signed.test", trusted, false, dnsx.ErrTemporary, true},
		{"down.signed.test", trusted, false, dnsx.ErrTemporary, false},
		{"broken.signed.test", untrusted, false, dnsx.ErrTemporary, false},
	}
	for _, tt := range tests {
		_, res, err := tt.c.LookupMX(t.Context(), tt.name)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
		if got := errors.Is(err, dnsx.ErrBogus); got != tt.wantBogus {
			t.Errorf("%s: bogus = %v (%v), want %v", tt.name, got, err, tt.wantBogus)
		}
		if err == nil && res.Secure != tt.wantSecure {
			t.Errorf("%s: Secure = %v, want %v", tt.name, res.Secure, tt.wantSecure)
		}
	}
	if got := trusted.Stats().Bogus; got != 2 {
		t.Errorf("Stats().Bogus = %d, want 2", got)
	}
}

// TestBogusFromValidatorStopsLookup_DANE2 shows that once a trusted validating resolver calls an answer bogus,
// no other resolver is asked: a resolver that does not validate would return the forged records, insecure,
// and DANE would give way to opportunistic TLS (RFC 7672 Section 2.1.2).
func TestBogusFromValidatorStopsLookup_DANE2(t *testing.T) {
	t.Parallel()
	validator := dnstest.New(t)
	validator.Add(
		"forged.example. MX 10 mx.attacker.example.",
		"_25._tcp.mx.forged.example. TLSA 3 1 1 abcdef0123",
	)
	validator.Fail("forged.example", dns.TypeMX, dnstest.FailBogus)
	validator.Fail("_25._tcp.mx.forged.example", dns.TypeTLSA, dnstest.FailBogus)
	// The second resolver does not validate: it hands out the forged data.
	n := newNet(t)
	n.DNS.AddMX("forged.example", "mx.attacker.example", 10)
	n.DNS.AddTLSA("_25._tcp.mx.forged.example", dnsx.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)})

	c := &dnsx.Client{
		Servers:    []string{validator.Addr(), n.DNSAddr},
		Timeout:    10 * time.Second,
		Attempts:   1,
		Validating: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	}
	if mx, _, err := c.LookupMX(t.Context(), "forged.example"); !errors.Is(err, dnsx.ErrBogus) {
		t.Errorf("LookupMX = %v, %v; want ErrBogus", mx, err)
	}
	if tlsa, _, err := c.LookupTLSA(t.Context(), "_25._tcp.mx.forged.example"); !errors.Is(err, dnsx.ErrBogus) {
		t.Errorf("LookupTLSA = %v, %v; want ErrBogus", tlsa, err)
	}
	if q := n.DNS.Queries(); len(q) != 0 {
		t.Errorf("the non-validating resolver was asked %v after a bogus answer", q)
	}
}

// TestLookupIPBogusFamilyWins_DANE2 shows that a bogus A or AAAA RRset makes the host unusable even when the
// other address family answers (RFC 7672 Section 2.1.2).
func TestLookupIPBogusFamilyWins_DANE2(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"v6bogus.example. A 192.0.2.1",
		"v6bogus.example. AAAA 2001:db8::1",
		"v4bogus.example. A 192.0.2.2",
		"v4bogus.example. AAAA 2001:db8::2",
		"v4bogus-nx.example. AAAA 2001:db8::3",
	)
	s.Fail("v6bogus.example", dns.TypeAAAA, dnstest.FailBogus)
	s.Fail("v4bogus.example", dns.TypeA, dnstest.FailBogus)
	s.Fail("v4bogus-nx.example", dns.TypeA, dnstest.FailBogus)
	s.Fail("v4bogus-nx.example", dns.TypeAAAA, dnstest.FailNXDomain)
	c := s.Client()
	for _, name := range []string{"v6bogus.example", "v4bogus.example", "v4bogus-nx.example"} {
		addrs, _, err := c.LookupIP(t.Context(), name)
		if !errors.Is(err, dnsx.ErrBogus) || len(addrs) != 0 {
			t.Errorf("LookupIP(%s) = %v, %v; want no addresses and ErrBogus", name, addrs, err)
		}
	}
}

func TestParseValidating(t *testing.T) {
	t.Parallel()
	got, err := dnsx.ParseValidating([]string{"127.0.0.1", "10.0.0.0/8", "::1"})
	if err != nil || len(got) != 3 || got[0] != netip.MustParsePrefix("127.0.0.1/32") || got[2] != netip.MustParsePrefix("::1/128") {
		t.Errorf("ParseValidating = %v, %v", got, err)
	}
	if _, err := dnsx.ParseValidating([]string{"resolver.example"}); err == nil {
		t.Error("a host name was accepted as a validating resolver")
	}
}

// TestStubValidators_DANE1 shows that a known forwarding stub (Docker's 127.0.0.11) trusted as the only
// validating resolver is named, so that status can warn, and that a real validating resolver beside it, or
// not trusting the stub, silences it.
func TestStubValidators_DANE1(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		servers    []string
		validating []netip.Prefix
		want       []string
	}{
		{"docker stub alone", []string{"127.0.0.11:53"}, nil, []string{"127.0.0.11:53"}},
		{"docker stub and unbound", []string{"127.0.0.11:53", "127.0.0.1:53"}, nil, nil},
		{"docker stub beside an untrusted resolver", []string{"127.0.0.11:53", "192.0.2.53:53"}, nil, []string{"127.0.0.11:53"}},
		{"local resolver", []string{"127.0.0.1:53"}, nil, nil},
		{"stub not trusted", []string{"127.0.0.11:53"}, []netip.Prefix{}, nil},
	}
	for _, tt := range tests {
		c := &dnsx.Client{Servers: tt.servers, Validating: tt.validating}
		var got []string
		for _, s := range c.StubValidators() {
			if s.Name == "" {
				t.Errorf("%s: stub %s has no name", tt.name, s.Server)
			}
			got = append(got, s.Server)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: StubValidators = %v, want %v", tt.name, got, tt.want)
		}
	}
}
