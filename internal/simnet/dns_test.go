package simnet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dnsx"
)

// newNet starts a Net closed at the end of the test.
func newNet(t *testing.T) *Net {
	t.Helper()
	n, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitCtx bounds every wait of a test.
func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exchange sends one question to the Net's DNS server.
func exchange(t *testing.T, n *Net, network, name string, qtype uint16, edns bool) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		m.SetEdns0(4096, true)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, n.DNSAddr)
	return r, err
}

// answerText renders an answer section in master-file form, one record per entry, spaces normalised.
func answerText(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

func TestDNSAnswers(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	d := n.DNS
	d.AddA("mx1.example.com", netip.MustParseAddr("192.0.2.11"))
	d.AddA("mx1.example.com", netip.MustParseAddr("2001:db8::11"))
	d.AddMX("example.com", "mx1.example.com", 10)
	d.AddMX("Example.COM.", "mx2.example.com", 20)
	d.AddMX("null.test", "mx.null.test", 10)
	d.SetNullMX("null.test")
	d.AddTXT("_mta-sts.example.com", "v=STSv1; ", "id=20240101T000000")
	d.AddTXT("_smtp._tls.example.com", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test")
	d.AddCNAME("alias.example.com", "alias2.example.com")
	d.AddCNAME("alias2.example.com", "mx1.example.com")
	d.AddCNAME("dangling.example.com", "gone.example.com")
	d.AddCNAME("loop1.example.com", "loop2.example.com")
	d.AddCNAME("loop2.example.com", "loop1.example.com")
	d.AddTLSA("_25._tcp.mx1.example.com", dnsx.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0xab, 0xcd}})
	d.AddA("bücher.example", netip.MustParseAddr("192.0.2.99"))
	if err := d.AddZone("zone.test. 60 IN MX 5 mx.zone.test.\nmx.zone.test. 60 IN A 192.0.2.5\n"); err != nil {
		t.Fatal(err)
	}
	d.AddA("failing.example.com", netip.MustParseAddr("192.0.2.1"))
	d.SetFailure("failing.example.com", dns.TypeA, ServFail)
	d.AddA("refused.example.com", netip.MustParseAddr("192.0.2.1"))
	d.SetFailure("refused.example.com", dns.TypeANY, Refused)
	d.AddA("vanish.example.com", netip.MustParseAddr("192.0.2.1"))
	d.SetFailure("vanish.example.com", dns.TypeA, NXDomain)
	d.AddCNAME("to-failing.example.com", "failing.example.com")

	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		want  []string
	}{
		{"A", "mx1.example.com", dns.TypeA, dns.RcodeSuccess,
			[]string{"mx1.example.com. 300 IN A 192.0.2.11"}},
		{"AAAA", "MX1.example.com", dns.TypeAAAA, dns.RcodeSuccess,
			[]string{"mx1.example.com. 300 IN AAAA 2001:db8::11"}},
		{"MX", "example.com", dns.TypeMX, dns.RcodeSuccess, []string{
			"example.com. 300 IN MX 10 mx1.example.com.",
			"example.com. 300 IN MX 20 mx2.example.com.",
		}},
		{"NullMX_RFC7505", "null.test", dns.TypeMX, dns.RcodeSuccess, []string{"null.test. 300 IN MX 0 ."}},
		{"TXTSeveralStrings", "_mta-sts.example.com", dns.TypeTXT, dns.RcodeSuccess,
			[]string{`_mta-sts.example.com. 300 IN TXT "v=STSv1; " "id=20240101T000000"`}},
		{"CNAMEChain", "alias.example.com", dns.TypeA, dns.RcodeSuccess, []string{
			"alias.example.com. 300 IN CNAME alias2.example.com.",
			"alias2.example.com. 300 IN CNAME mx1.example.com.",
			"mx1.example.com. 300 IN A 192.0.2.11",
		}},
		{"CNAMEQueried", "alias.example.com", dns.TypeCNAME, dns.RcodeSuccess,
			[]string{"alias.example.com. 300 IN CNAME alias2.example.com."}},
		{"CNAMEToNothing", "dangling.example.com", dns.TypeA, dns.RcodeNameError,
			[]string{"dangling.example.com. 300 IN CNAME gone.example.com."}},
		{"CNAMELoop", "loop1.example.com", dns.TypeA, dns.RcodeServerFailure, nil},
		{"CNAMEToFailure", "to-failing.example.com", dns.TypeA, dns.RcodeServerFailure, nil},
		{"NXDOMAIN", "nope.example.com", dns.TypeA, dns.RcodeNameError, nil},
		{"NODATA", "mx1.example.com", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"EmptyNonTerminalIsNODATA", "_tcp.mx1.example.com", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"TLSA", "_25._tcp.mx1.example.com", dns.TypeTLSA, dns.RcodeSuccess,
			[]string{"_25._tcp.mx1.example.com. 300 IN TLSA 3 1 1 abcd"}},
		{"IDNALabel", "xn--bcher-kva.example", dns.TypeA, dns.RcodeSuccess,
			[]string{"xn--bcher-kva.example. 300 IN A 192.0.2.99"}},
		{"AddZone", "zone.test", dns.TypeMX, dns.RcodeSuccess, []string{"zone.test. 60 IN MX 5 mx.zone.test."}},
		{"ServFail", "failing.example.com", dns.TypeA, dns.RcodeServerFailure, nil},
		{"ServFailOtherTypeUnaffected", "failing.example.com", dns.TypeTXT, dns.RcodeSuccess, nil},
		{"RefusedAnyType", "refused.example.com", dns.TypeMX, dns.RcodeRefused, nil},
		{"InjectedNXDOMAIN", "vanish.example.com", dns.TypeA, dns.RcodeNameError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, network := range []string{"udp", "tcp"} {
				m, err := exchange(t, n, network, tt.qname, tt.qtype, false)
				if err != nil {
					t.Fatalf("%s: %v", network, err)
				}
				if m.Rcode != tt.rcode {
					t.Errorf("%s: rcode = %s, want %s", network, dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
				}
				if diff := cmp.Diff(tt.want, answerText(m)); diff != "" {
					t.Errorf("%s: answer (-want +got):\n%s", network, diff)
				}
				if m.AuthenticatedData {
					t.Errorf("%s: AD bit set on an insecure name", network)
				}
			}
		})
	}
}

func TestDNSSecureADBit(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	d := n.DNS
	ip := netip.MustParseAddr("192.0.2.1")
	for _, name := range []string{"signed.test", "mx.signed.test", "mx.unsigned.signed.test", "plain.test"} {
		d.AddA(name, ip)
	}
	d.AddCNAME("to-plain.signed.test", "plain.test")
	d.AddCNAME("to-mx.signed.test", "mx.signed.test")
	d.SetSecure("signed.test", true)
	d.SetSecure("unsigned.signed.test", false)

	tests := []struct {
		qname string
		qtype uint16
		want  bool
	}{
		{"signed.test", dns.TypeA, true},
		{"mx.signed.test", dns.TypeA, true},
		{"mx.signed.test", dns.TypeTXT, true}, // secure NODATA
		{"missing.signed.test", dns.TypeA, true},
		{"mx.unsigned.signed.test", dns.TypeA, false},
		{"plain.test", dns.TypeA, false},
		{"to-mx.signed.test", dns.TypeA, true},
		{"to-plain.signed.test", dns.TypeA, false},
	}
	for _, tt := range tests {
		m, err := exchange(t, n, "udp", tt.qname, tt.qtype, true)
		if err != nil {
			t.Fatal(err)
		}
		if m.AuthenticatedData != tt.want {
			t.Errorf("%s %s: AD = %v, want %v", tt.qname, dns.TypeToString[tt.qtype], m.AuthenticatedData, tt.want)
		}
	}

	d.SetSecure("signed.test", false)
	m, err := exchange(t, n, "udp", "mx.signed.test", dns.TypeA, true)
	if err != nil {
		t.Fatal(err)
	}
	if m.AuthenticatedData {
		t.Errorf("AD still set after SetSecure(false)")
	}
}

func TestDNSTimeoutDropsQuery(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	n.DNS.AddTXT("_mta-sts.slow.test", "v=STSv1; id=1")
	n.DNS.SetFailure("_mta-sts.slow.test", dns.TypeTXT, Timeout)
	m := new(dns.Msg)
	m.SetQuestion("_mta-sts.slow.test.", dns.TypeTXT)
	// The client's own timeout is the event awaited: there is no answer to wait for.
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	_, _, err := c.Exchange(m, n.DNSAddr)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Exchange error = %v, want a timeout", err)
	}
	if !n.DNS.Queried("_mta-sts.slow.test.", dns.TypeTXT) {
		t.Errorf("dropped query not logged")
	}

	n.DNS.SetFailure("_mta-sts.slow.test", dns.TypeTXT, None)
	got, err := exchange(t, n, "udp", "_mta-sts.slow.test", dns.TypeTXT, false)
	if err != nil {
		t.Fatalf("after clearing the failure: %v", err)
	}
	if len(got.Answer) != 1 {
		t.Errorf("after clearing the failure: answer %v", got.Answer)
	}
}

func TestDNSMutableAndQueryLog(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	d := n.DNS
	d.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	d.AddA("example.com", netip.MustParseAddr("192.0.2.1"))

	d.Remove("_mta-sts.example.com", dns.TypeTXT)
	m, err := exchange(t, n, "udp", "_mta-sts.example.com", dns.TypeTXT, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove: rcode %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
	if err := d.WaitQuery(waitCtx(t), "_MTA-STS.example.com.", dns.TypeTXT); err != nil {
		t.Fatal(err)
	}
	want := []Query{{"_mta-sts.example.com", dns.TypeTXT}}
	if diff := cmp.Diff(want, d.Queries()); diff != "" {
		t.Errorf("Queries (-want +got):\n%s", diff)
	}
	if d.Queried("_mta-sts.example.com", dns.TypeA) {
		t.Errorf("Queried reports a question never asked")
	}
	d.ResetQueries()
	if got := d.Queries(); len(got) != 0 {
		t.Errorf("after ResetQueries: %v", got)
	}
}

func TestDNSTruncatesLargeUDPAnswers(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	for i := range 20 {
		n.DNS.AddTXT("big.test", strings.Repeat(string(rune('a'+i)), 200))
	}
	m, err := exchange(t, n, "udp", "big.test", dns.TypeTXT, false)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated {
		t.Errorf("UDP answer of 20x200 octets without EDNS not truncated")
	}
	m, err = exchange(t, n, "tcp", "big.test", dns.TypeTXT, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.Truncated || len(m.Answer) != 20 {
		t.Errorf("TCP answer: truncated=%v, %d records, want all 20", m.Truncated, len(m.Answer))
	}
}
