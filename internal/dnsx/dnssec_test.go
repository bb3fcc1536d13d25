package dnsx_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dnsx"
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
