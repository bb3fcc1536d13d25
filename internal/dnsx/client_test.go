package dnsx_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
)

func TestLookupMX(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"example.com. 300 IN MX 10 MX1.Example.COM.",
		"example.com. 300 IN MX 20 mx2.example.com.",
		"null.example. 300 IN MX 0 .",
	)
	c := s.Client()
	ctx := t.Context()

	got, res, err := c.LookupMX(ctx, "Example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := []dnsx.MX{{Host: "mx1.example.com", Pref: 10}, {Host: "mx2.example.com", Pref: 20}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("MX (-want +got):\n%s", diff)
	}
	if res.Secure || len(res.CNAMEs) != 0 {
		t.Errorf("Result = %+v, want insecure with no CNAMEs", res)
	}

	// RFC 7505: the null MX "." becomes Host "".
	got, _, err = c.LookupMX(ctx, "null.example.")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]dnsx.MX{{Host: "", Pref: 0}}, got); diff != "" {
		t.Errorf("null MX (-want +got):\n%s", diff)
	}

	for _, q := range s.Queries() {
		if !q.RD || !q.DO {
			t.Errorf("query %+v: want RD and DO set", q)
		}
	}
}

// TestLookupOutcomes_SMTP2_SMTP3_SMTP4 shows the distinctions mail routing depends on: NXDOMAIN, NODATA and
// temporary failure.
func TestLookupOutcomes_SMTP2_SMTP3_SMTP4(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		"nodata.example. A 192.0.2.1",
		"servfail.example. MX 10 mx.servfail.example.",
		"refused.example. MX 10 mx.refused.example.",
		"dropped.example. MX 10 mx.dropped.example.",
	)
	s.Fail("servfail.example", dns.TypeMX, dnstest.FailServFail)
	s.Fail("refused.example", 0, dnstest.FailRefused)
	s.Fail("dropped.example", dns.TypeMX, dnstest.FailDrop)
	c := s.Client()

	tests := []struct {
		name    string
		wantErr error
	}{
		{"nx.example", dnsx.ErrNotFound},
		{"nodata.example", nil},
		{"servfail.example", dnsx.ErrTemporary},
		{"refused.example", dnsx.ErrTemporary},
		{"dropped.example", dnsx.ErrTemporary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, _, err := c.LookupMX(t.Context(), tt.name)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) != 0 {
				t.Errorf("got records %v, want none", got)
			}
			if tt.wantErr != nil && errors.Is(err, dnsx.ErrNotFound) == errors.Is(err, dnsx.ErrTemporary) {
				t.Errorf("err = %v: must be exactly one of ErrNotFound, ErrTemporary", err)
			}
		})
	}
}

func TestNetworkErrorIsTemporary(t *testing.T) {
	t.Parallel()
	// A port where nothing listens: "connection refused" or a timeout, either is temporary.
	c := &dnsx.Client{Servers: []string{"127.0.0.1:1"}, Timeout: 200 * time.Millisecond, Attempts: 1}
	_, _, err := c.LookupTXT(t.Context(), "example.com")
	if !errors.Is(err, dnsx.ErrTemporary) {
		t.Fatalf("err = %v, want ErrTemporary", err)
	}
}

func TestContextCancelIsTemporary(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add("example.com. MX 10 mx.example.com.")
	s.Fail("example.com", 0, dnstest.FailDrop)
	c := &dnsx.Client{Servers: []string{s.Addr()}, Timeout: time.Minute, Attempts: 1}
	ctx, cancel := context.WithCancel(t.Context())
	// Cancel once the query has reached the server, so the lookup is blocked reading the answer.
	go func() {
		defer cancel()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		_ = s.WaitQuery(wctx, "example.com", dns.TypeMX)
	}()
	start := time.Now()
	_, _, err := c.LookupMX(ctx, "example.com")
	if !errors.Is(err, dnsx.ErrTemporary) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrTemporary wrapping context.Canceled", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("lookup took %v after cancellation", d)
	}
}

func TestServerRotation(t *testing.T) {
	t.Parallel()
	bad := dnstest.New(t)
	bad.Fail("example.com", 0, dnstest.FailServFail)
	good := dnstest.New(t)
	good.Add("example.com. TXT \"ok\"")
	c := &dnsx.Client{Servers: []string{bad.Addr(), good.Addr()}, Timeout: 200 * time.Millisecond, Attempts: 1}
	got, _, err := c.LookupTXT(t.Context(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ok"}, got); diff != "" {
		t.Errorf("TXT (-want +got):\n%s", diff)
	}
	// The SERVFAIL of a (loopback, so trusted) validating resolver is asked again with checking disabled,
	// to tell a DNSSEC failure from another one.
	if n := bad.QueryCount("example.com", dns.TypeTXT); n != 2 {
		t.Errorf("bad server got %d queries, want 2 (the query and its CD re-check)", n)
	}

	// Attempts goes through the list again.
	bad2 := dnstest.New(t)
	bad2.Fail("example.com", 0, dnstest.FailRefused)
	c = &dnsx.Client{Servers: []string{bad2.Addr()}, Timeout: 200 * time.Millisecond, Attempts: 3}
	if _, _, err := c.LookupTXT(t.Context(), "example.com"); !errors.Is(err, dnsx.ErrTemporary) {
		t.Fatalf("err = %v, want ErrTemporary", err)
	}
	if n := bad2.QueryCount("example.com", dns.TypeTXT); n != 3 {
		t.Errorf("server got %d queries, want 3 (Attempts)", n)
	}
}

// TestTXTConcatenation shows RFC 8461 Section 3.1 / RFC 7208 Section 3.3: a record's strings are joined
// without separators, and records stay separate.
func TestTXTConcatenation(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(
		`_mta-sts.example.com. TXT "v=STSv1; " "id=2024" "0101;"`,
		`_mta-sts.example.com. TXT "other"`,
	)
	got, _, err := s.Client().LookupTXT(t.Context(), "_mta-sts.example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"v=STSv1; id=20240101;", "other"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TXT (-want +got):\n%s", diff)
	}
}

func TestTruncationFallsBackToTCP(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	var want []string
	for i := range 30 {
		txt := strings.Repeat(string(rune('a'+i%26)), 100)
		want = append(want, txt)
		s.Add("big.example. TXT " + txt)
	}
	got, _, err := s.Client().LookupTXT(t.Context(), "big.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d TXT records, want %d", len(got), len(want))
	}
	var nets []string
	for _, q := range s.Queries() {
		nets = append(nets, q.Net)
	}
	if diff := cmp.Diff([]string{"udp", "tcp"}, nets); diff != "" {
		t.Errorf("transports (-want +got):\n%s", diff)
	}
}

func TestCNAMEChain_SMTP1(t *testing.T) {
	t.Parallel()
	for _, chase := range []bool{true, false} {
		name := "server-chases"
		if !chase {
			name = "client-chases"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := dnstest.New(t)
			s.SetChaseCNAME(chase)
			s.Add(
				"a.example. CNAME B.example.",
				"b.example. CNAME c.example.",
				"c.example. MX 10 mx.c.example.",
				"gone.example. CNAME nx.example.",
				"empty.example. CNAME nodata.example.",
				"nodata.example. A 192.0.2.1",
			)
			c := s.Client()
			ctx := t.Context()

			mxs, res, err := c.LookupMX(ctx, "a.example")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]dnsx.MX{{Host: "mx.c.example", Pref: 10}}, mxs); diff != "" {
				t.Errorf("MX (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"b.example", "c.example"}, res.CNAMEs); diff != "" {
				t.Errorf("CNAMEs (-want +got):\n%s", diff)
			}

			// A CNAME to a name that does not exist: NXDOMAIN is about the target (RFC 6604).
			_, res, err = c.LookupMX(ctx, "gone.example")
			if !errors.Is(err, dnsx.ErrNotFound) {
				t.Errorf("CNAME to NXDOMAIN: err = %v, want ErrNotFound", err)
			}
			if diff := cmp.Diff([]string{"nx.example"}, res.CNAMEs); diff != "" {
				t.Errorf("CNAMEs (-want +got):\n%s", diff)
			}

			// A CNAME to a name without MX: NODATA.
			mxs, res, err = c.LookupMX(ctx, "empty.example")
			if err != nil || len(mxs) != 0 {
				t.Errorf("CNAME to NODATA: got %v, %v; want no records, nil", mxs, err)
			}
			if diff := cmp.Diff([]string{"nodata.example"}, res.CNAMEs); diff != "" {
				t.Errorf("CNAMEs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCNAMELoopAndLength(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.SetChaseCNAME(false) // the client must detect the loop itself
	s.Add(
		"loop1.example. CNAME loop2.example.",
		"loop2.example. CNAME loop1.example.",
	)
	// A chain of 9 CNAMEs, one more than the client follows.
	for i := range 9 {
		s.Add("l" + string(rune('0'+i)) + ".example. CNAME l" + string(rune('1'+i)) + ".example.")
	}
	s.Add("l9.example. A 192.0.2.9")
	c := s.Client()
	for _, name := range []string{"loop1.example", "l0.example"} {
		_, _, err := c.LookupMX(t.Context(), name)
		if !errors.Is(err, dnsx.ErrTemporary) {
			t.Errorf("%s: err = %v, want ErrTemporary", name, err)
		}
	}
	// Eight hops are fine.
	addrs, res, err := c.LookupIP(t.Context(), "l1.example")
	if err != nil || len(addrs) != 1 || len(res.CNAMEs) != 8 {
		t.Errorf("8 hops: got %v, %+v, %v", addrs, res, err)
	}
}

// TestADBit_DANE6 shows Result.Secure follows the AD bit, and that an insecure link anywhere in a CNAME chain
// makes the result insecure (RFC 7672 Section 2.1.3).
func TestADBit_DANE6(t *testing.T) {
	t.Parallel()
	for _, chase := range []bool{true, false} {
		t.Run("chase="+map[bool]string{true: "server", false: "client"}[chase], func(t *testing.T) {
			t.Parallel()
			s := dnstest.New(t)
			s.SetChaseCNAME(chase)
			s.SetSecure("signed.example", true)
			s.SetSecure("island.signed.example", false)
			s.Add(
				"signed.example. MX 10 mx.signed.example.",
				"alias.signed.example. CNAME signed.example.",
				"via-island.signed.example. CNAME x.island.signed.example.",
				"x.island.signed.example. CNAME signed.example.",
				"plain.example. CNAME signed.example.",
				"_25._tcp.mx.signed.example. TLSA 3 1 1 abcdef0123",
			)
			c := s.Client()
			tests := []struct {
				name       string
				wantSecure bool
			}{
				{"signed.example", true},
				{"alias.signed.example", true},
				{"via-island.signed.example", false},
				{"plain.example", false},
			}
			for _, tt := range tests {
				_, res, err := c.LookupMX(t.Context(), tt.name)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if res.Secure != tt.wantSecure {
					t.Errorf("%s: Secure = %v, want %v", tt.name, res.Secure, tt.wantSecure)
				}
			}
			// An authenticated denial (NODATA in a signed zone) is secure.
			got, res, err := c.LookupTXT(t.Context(), "signed.example")
			if err != nil || len(got) != 0 || !res.Secure {
				t.Errorf("secure NODATA: got %v, %+v, %v", got, res, err)
			}
			tlsa, res, err := c.LookupTLSA(t.Context(), "_25._tcp.mx.signed.example")
			if err != nil || !res.Secure {
				t.Fatalf("TLSA: %+v, %v", res, err)
			}
			want := []dnsx.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0xab, 0xcd, 0xef, 0x01, 0x23}}}
			if diff := cmp.Diff(want, tlsa); diff != "" {
				t.Errorf("TLSA (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLookupIP(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.SetSecure("both.example", true)
	s.Add(
		"both.example. A 192.0.2.1",
		"both.example. A 192.0.2.2",
		"both.example. AAAA 2001:db8::1",
		"v4only.example. A 192.0.2.4",
		"v6fail.example. A 192.0.2.6",
		"v6fail.example. AAAA 2001:db8::6",
		"v6fail-nodata.example. MX 10 mx.example.",
		"alias.example. CNAME both.example.",
	)
	s.Fail("v6fail.example", dns.TypeAAAA, dnstest.FailServFail)
	s.Fail("v6fail-nodata.example", dns.TypeAAAA, dnstest.FailServFail)
	s.Fail("bothfail.example", 0, dnstest.FailServFail)
	c := s.Client()

	tests := []struct {
		name       string
		want       []string
		wantErr    error
		wantSecure bool
	}{
		{name: "both.example", want: []string{"2001:db8::1", "192.0.2.1", "192.0.2.2"}, wantSecure: true},
		{name: "alias.example", want: []string{"2001:db8::1", "192.0.2.1", "192.0.2.2"}},
		{name: "v4only.example", want: []string{"192.0.2.4"}},
		{name: "v6fail.example", want: []string{"192.0.2.6"}},
		{name: "v6fail-nodata.example", wantErr: dnsx.ErrTemporary},
		{name: "bothfail.example", wantErr: dnsx.ErrTemporary},
		{name: "nx.example", wantErr: dnsx.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, res, err := c.LookupIP(t.Context(), tt.name)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var want []netip.Addr
			for _, a := range tt.want {
				want = append(want, netip.MustParseAddr(a))
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
			if res.Secure != tt.wantSecure {
				t.Errorf("Secure = %v, want %v", res.Secure, tt.wantSecure)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    *dnsx.Client
		want []string
	}{
		{"configured", &dnsx.Client{Servers: []string{"127.0.0.1:5353"}}, []string{"127.0.0.1:5353"}},
		{"resolv.conf", &dnsx.Client{ResolvConf: conf}, []string{"192.0.2.53:53", "[2001:db8::53]:53"}},
		{"unreadable", &dnsx.Client{ResolvConf: filepath.Join(dir, "missing")}, []string{"127.0.0.1:53"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.c.ServersForTest()); diff != "" {
			t.Errorf("%s: servers (-want +got):\n%s", tt.name, diff)
		}
	}
}

// TestTXTReturnsWireBytes: TXT strings come back as the bytes published, not in miekg/dns's presentation
// form: a zone's \DDD, \" and \\ reach the record parsers as the byte, the quote and the backslash.
func TestTXTReturnsWireBytes(t *testing.T) {
	t.Parallel()
	s := dnstest.New(t)
	s.Add(`example.com. TXT "v=STSv1; id=1; x=a\001b" "c\"d" "e\\f" "\195\169"`)
	c := &dnsx.Client{Servers: []string{s.Addr()}, Timeout: 2 * time.Second, Attempts: 1}
	got, _, err := c.LookupTXT(t.Context(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"v=STSv1; id=1; x=a\x01bc\"de\\f\u00e9"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TXT (-want +got):\n%s", diff)
	}
}

func TestTXTWire(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		``:            ``,
		`plain`:       `plain`,
		`a\059b`:      "a;b",
		`\"q\"`:       `"q"`,
		`back\\slash`: `back\slash`,
		`\255\000`:    "\xff\x00",
		`\999`:        "999", // not a byte: the backslash only quotes the next character
		`trailing\`:   `trailing\`,
		`\12x`:        "12x",
	} {
		if got := dnsx.TXTWire(in); got != want {
			t.Errorf("TXTWire(%q) = %q, want %q", in, got, want)
		}
	}
}
