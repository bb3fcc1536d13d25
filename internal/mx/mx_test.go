package mx_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/mx"
)

func newRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func resolve(t *testing.T, s *dnstest.Server, domain string, opts mx.Options) (mx.Route, error) {
	t.Helper()
	if opts.Rand == nil {
		opts.Rand = newRand()
	}
	return mx.Resolve(t.Context(), s.Client(), address.MustParseDomain(domain), opts)
}

func names(hosts []mx.Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Name)
	}
	return out
}

func TestPreferenceOrder_SMTP7(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. MX 30 mx3.example.com.",
		"example.com. MX 10 MX1.example.com.",
		"example.com. MX 20 mx2.example.com.",
	)
	got, err := resolve(t, s, "example.com", mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []mx.Host{{Name: "mx1.example.com", Pref: 10}, {Name: "mx2.example.com", Pref: 20}, {Name: "mx3.example.com", Pref: 30}}
	if diff := cmp.Diff(want, got.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
}

// TestShuffleEqualPreferences_SMTP7: MX 5 c is always first; of the two MX 10 hosts each comes first (among
// them) in 30–70 % of 400 resolutions.
func TestShuffleEqualPreferences_SMTP7(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. MX 10 a.example.com.",
		"example.com. MX 10 b.example.com.",
		"example.com. MX 5 c.example.com.",
	)
	// Resolve once and reorder the same answer 400 times through a fake resolver, so the test does not send
	// 400 queries; one real resolution checks the wiring.
	mxs, res, err := s.Client().LookupMX(t.Context(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	fake := staticMX{mxs: mxs, res: res}
	rnd := newRand()
	first := map[string]int{}
	for range 400 {
		route, err := mx.Resolve(t.Context(), fake, address.MustParseDomain("example.com"), mx.Options{Rand: rnd})
		if err != nil {
			t.Fatal(err)
		}
		if got := names(route.Hosts); len(got) != 3 || got[0] != "c.example.com" {
			t.Fatalf("hosts = %v, want c.example.com first of three", got)
		}
		first[route.Hosts[1].Name]++
	}
	for _, h := range []string{"a.example.com", "b.example.com"} {
		if n := first[h]; n < 120 || n > 280 {
			t.Errorf("%s first among equals %d/400 times, want 30–70 %%", h, n)
		}
	}
	if _, err := resolve(t, s, "example.com", mx.Options{}); err != nil {
		t.Fatal(err)
	}
}

// staticMX is a dnsx.Resolver that returns one fixed MX answer.
type staticMX struct {
	dnsx.Resolver
	mxs []dnsx.MX
	res dnsx.Result
}

func (f staticMX) LookupMX(context.Context, string) ([]dnsx.MX, dnsx.Result, error) {
	return append([]dnsx.MX(nil), f.mxs...), f.res, nil
}

// TestCNAMEAtDomain_SMTP1: a CNAME at the recipient domain is followed and its target's MX used.
func TestCNAMEAtDomain_SMTP1(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. CNAME mail.hosting.test.",
		"mail.hosting.test. MX 10 mx.hosting.test.",
		"alias.example. CNAME plain.example.",
		"plain.example. A 192.0.2.20",
	)
	got, err := resolve(t, s, "example.com", mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := mx.Route{Hosts: []mx.Host{{Name: "mx.hosting.test", Pref: 10}}, CNAMEs: []string{"mail.hosting.test"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("route (-want +got):\n%s", diff)
	}

	// A CNAME to a name with no MX: implicit MX, named by the recipient domain, with the chain kept.
	got, err = resolve(t, s, "alias.example", mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want = mx.Route{Hosts: []mx.Host{{Name: "alias.example", Implicit: true}}, CNAMEs: []string{"plain.example"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("route (-want +got):\n%s", diff)
	}
}

// TestNXDOMAINIsPermanent_SMTP2: a domain that does not exist bounces at once (5.1.2).
func TestNXDOMAINIsPermanent_SMTP2(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add("gone.example. CNAME nx.example.")
	for _, d := range []string{"nonexistent.test", "gone.example"} {
		_, err := resolve(t, s, d, mx.Options{})
		if !errors.Is(err, mx.ErrNoSuchDomain) || !mx.Permanent(err) {
			t.Errorf("%s: err = %v, want permanent ErrNoSuchDomain", d, err)
		}
		if errors.Is(err, mx.ErrTemporary) {
			t.Errorf("%s: err = %v also wraps ErrTemporary", d, err)
		}
	}
}

// TestTemporaryFailureDefers_SMTP3_DANE2: SERVFAIL (which is also what a validating resolver answers for bogus
// data), REFUSED and timeouts defer; nothing falls back to A records.
func TestTemporaryFailureDefers_SMTP3_DANE2(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"servfail.example. MX 10 mx.servfail.example.",
		"servfail.example. A 192.0.2.1",
		"timeout.example. A 192.0.2.2",
		"refused.example. A 192.0.2.3",
	)
	s.Fail("servfail.example", dns.TypeMX, dnstest.FailServFail)
	s.Fail("timeout.example", dns.TypeMX, dnstest.FailDrop)
	s.Fail("refused.example", dns.TypeMX, dnstest.FailRefused)
	for _, d := range []string{"servfail.example", "timeout.example", "refused.example"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			route, err := resolve(t, s, d, mx.Options{})
			if !errors.Is(err, mx.ErrTemporary) || !errors.Is(err, dnsx.ErrTemporary) || mx.Permanent(err) {
				t.Errorf("err = %v, want temporary (mx and dnsx)", err)
			}
			if len(route.Hosts) != 0 {
				t.Errorf("hosts = %v, want none", route.Hosts)
			}
			if n := s.QueryCount(d, dns.TypeA) + s.QueryCount(d, dns.TypeAAAA); n != 0 {
				t.Errorf("%d address queries for %s, want none", n, d)
			}
		})
	}
}

// TestUnknownResolverErrorIsTemporary: temporary unless proven permanent.
func TestUnknownResolverErrorIsTemporary(t *testing.T) {
	t.Parallel()
	r := failingMX{err: errors.New("something odd")}
	_, err := mx.Resolve(t.Context(), r, address.MustParseDomain("example.com"), mx.Options{})
	if !errors.Is(err, mx.ErrTemporary) || mx.Permanent(err) {
		t.Errorf("err = %v, want temporary", err)
	}
}

type failingMX struct {
	dnsx.Resolver
	err error
}

func (f failingMX) LookupMX(context.Context, string) ([]dnsx.MX, dnsx.Result, error) {
	return nil, dnsx.Result{}, f.err
}

// TestImplicitMX_SMTP4: no MX records (NODATA): the domain is its own MX with preference 0.
func TestImplicitMX_SMTP4(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.SetSecure("signed.example", true)
	s.Add(
		"example.org. A 192.0.2.20",
		"signed.example. AAAA 2001:db8::25",
		"noaddr.example. TXT \"v=spf1 -all\"",
	)
	tests := []struct {
		domain string
		want   mx.Route
	}{
		{"example.org", mx.Route{Hosts: []mx.Host{{Name: "example.org", Implicit: true}}}},
		// Authenticated denial of MX: the route is secure (RFC 7672 Section 2.2.1).
		{"signed.example", mx.Route{Hosts: []mx.Host{{Name: "signed.example", Implicit: true}}, Secure: true}},
		// No addresses either: still a route; Addresses reports the problem at delivery time.
		{"noaddr.example", mx.Route{Hosts: []mx.Host{{Name: "noaddr.example", Implicit: true}}}},
	}
	for _, tt := range tests {
		got, err := resolve(t, s, tt.domain, mx.Options{})
		if err != nil {
			t.Fatalf("%s: %v", tt.domain, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: route (-want +got):\n%s", tt.domain, diff)
		}
	}
	addrs, _, err := mx.Addresses(t.Context(), s.Client(), "example.org")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.20") {
		t.Errorf("Addresses(example.org) = %v, %v; want [192.0.2.20]", addrs, err)
	}
	if _, _, err := mx.Addresses(t.Context(), s.Client(), "noaddr.example"); !errors.Is(err, mx.ErrNoAddress) {
		t.Errorf("Addresses(noaddr.example): err = %v, want ErrNoAddress", err)
	}
}

// TestNoFallbackToA_SMTP5: with MX records present, the domain's own A record is never a candidate, even when
// the MX host does not exist; that host is unusable (permanent), so delivery bounces.
func TestNoFallbackToA_SMTP5(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. MX 10 nx.example.com.",
		"example.com. A 192.0.2.1",
	)
	route, err := resolve(t, s, "example.com", mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]mx.Host{{Name: "nx.example.com", Pref: 10}}, route.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	_, _, err = mx.Addresses(t.Context(), s.Client(), "nx.example.com")
	if !errors.Is(err, mx.ErrNoAddress) || !mx.Permanent(err) {
		t.Errorf("Addresses(nx.example.com): err = %v, want permanent ErrNoAddress", err)
	}
	if n := s.QueryCount("example.com", dns.TypeA) + s.QueryCount("example.com", dns.TypeAAAA); n != 0 {
		t.Errorf("%d address queries for the domain itself, want none", n)
	}
}

// TestNullMX_SMTP6: "MX 0 ." means no mail, with no A/AAAA fallback; a "." next to real MX is ignored.
func TestNullMX_SMTP6(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.net. MX 0 .",
		"example.net. A 192.0.2.30",
		"mixed.example. MX 0 .",
		"mixed.example. MX 10 mx.mixed.example.",
	)
	_, err := resolve(t, s, "example.net", mx.Options{})
	if !errors.Is(err, mx.ErrNullMX) || !mx.Permanent(err) {
		t.Errorf("err = %v, want permanent ErrNullMX", err)
	}
	if n := s.QueryCount("example.net", dns.TypeA) + s.QueryCount("example.net", dns.TypeAAAA); n != 0 {
		t.Errorf("%d address queries for a null-MX domain, want none", n)
	}

	route, err := resolve(t, s, "mixed.example", mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]mx.Host{{Name: "mx.mixed.example", Pref: 10}}, route.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
}

// TestAddressOrder_SMTP8: IPv6 first, each family in the order the resolver returned.
func TestAddressOrder_SMTP8(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.SetSecure("mx1.example.com", true)
	s.Add(
		"mx1.example.com. A 192.0.2.11",
		"mx1.example.com. A 192.0.2.10",
		"mx1.example.com. AAAA 2001:db8::11",
	)
	s.Fail("broken.example.com", 0, dnstest.FailServFail)
	addrs, secure, err := mx.Addresses(t.Context(), s.Client(), "mx1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("2001:db8::11"), netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.10")}
	if diff := cmp.Diff(want, addrs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if !secure {
		t.Error("secure = false, want true")
	}
	_, _, err = mx.Addresses(t.Context(), s.Client(), "broken.example.com")
	if !errors.Is(err, mx.ErrTemporary) || mx.Permanent(err) {
		t.Errorf("Addresses(broken): err = %v, want temporary", err)
	}
}

// TestLoopPrevention_SMTP9: our own entry and every entry at its preference or higher are dropped.
func TestLoopPrevention_SMTP9(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. MX 10 primary.example.com.",
		"example.com. MX 20 gw.example.com.",
		"example.com. MX 20 other.example.com.",
		"example.com. MX 30 backup.example.com.",
		"self.example. MX 10 GW.example.com.",
		"self.example. MX 20 backup.example.com.",
		"implicit.example. A 192.0.2.1",
	)
	tests := []struct {
		domain  string
		local   []string
		want    []string
		wantErr error
	}{
		{"example.com", nil, []string{"primary.example.com", "gw.example.com", "other.example.com", "backup.example.com"}, nil},
		{"example.com", []string{"gw.example.com."}, []string{"primary.example.com"}, nil},
		{"example.com", []string{"unrelated.example"}, []string{"primary.example.com", "gw.example.com", "other.example.com", "backup.example.com"}, nil},
		{"self.example", []string{"gw.example.com"}, nil, mx.ErrLoop},
		// The lowest own entry decides, so listing a second own name at a higher preference changes nothing.
		{"example.com", []string{"backup.example.com", "gw.example.com"}, []string{"primary.example.com"}, nil},
		{"implicit.example", []string{"implicit.example"}, nil, mx.ErrLoop},
	}
	for _, tt := range tests {
		route, err := resolve(t, s, tt.domain, mx.Options{LocalNames: tt.local})
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s %v: err = %v, want %v", tt.domain, tt.local, err, tt.wantErr)
			continue
		}
		if tt.wantErr != nil && mx.Permanent(err) {
			t.Errorf("%s: ErrLoop must not be permanent: it is deferred until expiry", tt.domain)
		}
		got := names(route.Hosts)
		// The two 20s are shuffled; accept either order.
		if len(got) == 4 && got[1] == "other.example.com" {
			got[1], got[2] = got[2], got[1]
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s %v: hosts (-want +got):\n%s", tt.domain, tt.local, diff)
		}
	}
}

// TestMXNameNotExpanded_STS64: the host name is the MX exchange name even when it is a CNAME, because MTA-STS
// matches that name; the addresses come from the CNAME target.
func TestMXNameNotExpanded_STS64(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. MX 10 mx1.example.com.",
		"mx1.example.com. CNAME host.hosting.test.",
		"host.hosting.test. A 192.0.2.40",
	)
	route, err := resolve(t, s, "example.com", mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"mx1.example.com"}, names(route.Hosts)); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	addrs, _, err := mx.Addresses(t.Context(), s.Client(), route.Hosts[0].Name)
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.40") {
		t.Errorf("Addresses = %v, %v; want [192.0.2.40]", addrs, err)
	}
}

// TestSecureMX_DANE7: Route.Secure is the AD bit of the MX answer; an insecure CNAME link makes it insecure.
func TestSecureMX_DANE7(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.SetSecure("signed.example", true)
	s.Add(
		"signed.example. MX 10 mx.signed.example.",
		"plain.example. MX 10 mx.plain.example.",
		"alias.plain.example. CNAME signed.example.",
	)
	for domain, want := range map[string]bool{"signed.example": true, "plain.example": false, "alias.plain.example": false} {
		route, err := resolve(t, s, domain, mx.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if route.Secure != want {
			t.Errorf("%s: Secure = %v, want %v", domain, route.Secure, want)
		}
	}
}

func TestDuplicateHostTriedOnce(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. MX 20 mx.example.com.",
		"example.com. MX 10 mx.example.com.",
		"example.com. MX 15 other.example.com.",
	)
	route, err := resolve(t, s, "example.com", mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []mx.Host{{Name: "mx.example.com", Pref: 10}, {Name: "other.example.com", Pref: 15}}
	if diff := cmp.Diff(want, route.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
}

func TestNilRandStillShuffles_SMTP7(t *testing.T) {
	t.Parallel()
	fake := staticMX{mxs: []dnsx.MX{{Host: "a.example", Pref: 10}, {Host: "b.example", Pref: 10}}}
	seen := map[string]bool{}
	for range 200 {
		route, err := mx.Resolve(t.Context(), fake, address.MustParseDomain("example.com"), mx.Options{})
		if err != nil {
			t.Fatal(err)
		}
		seen[route.Hosts[0].Name] = true
	}
	if len(seen) != 2 {
		t.Errorf("first hosts seen %v over 200 runs, want both", seen)
	}
}
