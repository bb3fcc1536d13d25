package dane_test

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/simnet"
)

func newNet(t *testing.T) (*simnet.Net, *dnsx.Client) {
	t.Helper()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, &dnsx.Client{Servers: []string{n.DNSAddr}, Timeout: 10 * time.Second, Attempts: 1}
}

var rec = dnsx.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}

// lookup resolves host's addresses, then its TLSA records, as delivery does.
func lookup(t *testing.T, r dnsx.Resolver, host string, port int) dane.TLSASet {
	t.Helper()
	_, res, err := r.LookupIP(context.Background(), host)
	if err != nil {
		t.Fatalf("address of %s: %v", host, err)
	}
	return dane.Lookup(t.Context(), r, dane.LookupRequest{Host: host, Port: port, Addr: res})
}

// TestTLSALookupStatus_DANE4_DANE5_DANE13 shows each TLSA outcome: secure records, secure or insecure
// non-existence (DANE does not apply), insecure records (ignored), bogus and failed lookups (the server is
// unusable).
func TestTLSALookupStatus_DANE4_DANE5_DANE13(t *testing.T) {
	t.Parallel()
	n, r := newNet(t)
	n.DNS.SetDNSSEC("example.com", simnet.Secure)
	for _, h := range []string{"secure", "nodata", "nxdomain", "bogus", "servfail", "insecure"} {
		n.DNS.AddA(h+".example.com", n.Block.Addr().Next())
	}
	n.DNS.AddTLSA("_25._tcp.secure.example.com", rec)
	n.DNS.AddTXT("_25._tcp.nodata.example.com", "not a TLSA record")
	n.DNS.AddTLSA("_25._tcp.bogus.example.com", rec)
	n.DNS.SetDNSSEC("_25._tcp.bogus.example.com", simnet.Bogus)
	n.DNS.AddTLSA("_25._tcp.servfail.example.com", rec)
	n.DNS.SetFailure("_25._tcp.servfail.example.com", dns.TypeTLSA, simnet.ServFail)
	n.DNS.AddTLSA("_25._tcp.insecure.example.com", rec)
	n.DNS.SetDNSSEC("_25._tcp.insecure.example.com", simnet.Insecure)
	tests := []struct {
		host string
		want dane.Status
	}{
		{"secure.example.com", dane.StatusSecure},
		{"nodata.example.com", dane.StatusNone},
		{"nxdomain.example.com", dane.StatusNone},
		{"bogus.example.com", dane.StatusBogus},
		{"servfail.example.com", dane.StatusFailed},
		{"insecure.example.com", dane.StatusInsecure},
	}
	for _, tt := range tests {
		got := lookup(t, r, tt.host, 25)
		if got.Status != tt.want {
			t.Errorf("%s: Status = %s (%v), want %s", tt.host, got.Status, got.Err, tt.want)
		}
		if tt.want == dane.StatusSecure && (got.BaseDomain != tt.host || !got.Usable()) {
			t.Errorf("%s: %+v", tt.host, got)
		}
	}
}

// TestNoTLSAQueryForInsecureAddresses_DANE8: with insecure address records no TLSA query is sent, so a name
// server that times out on TLSA cannot hold delivery up.
func TestNoTLSAQueryForInsecureAddresses_DANE8(t *testing.T) {
	t.Parallel()
	n, r := newNet(t)
	n.DNS.AddA("mx.unsigned.test", n.Block.Addr().Next())
	n.DNS.SetFailure("_25._tcp.mx.unsigned.test", dns.TypeTLSA, simnet.Timeout)
	if got := lookup(t, r, "mx.unsigned.test", 25); got.Status != dane.StatusNone {
		t.Errorf("Status = %s, want none", got.Status)
	}
	if n.DNS.Queried("_25._tcp.mx.unsigned.test", dns.TypeTLSA) {
		t.Error("a TLSA query was sent for a host with insecure addresses")
	}
}

// TestTLSAQueryNameUsesPort_DANE9: a server on port 2525 is looked up at _2525._tcp.
func TestTLSAQueryNameUsesPort_DANE9(t *testing.T) {
	t.Parallel()
	n, r := newNet(t)
	n.DNS.SetDNSSEC("relay.test", simnet.Secure)
	n.DNS.AddA("relay.test", n.Block.Addr().Next())
	n.DNS.AddTLSA("_2525._tcp.relay.test", rec)
	got := lookup(t, r, "relay.test", 2525)
	if got.Status != dane.StatusSecure || !n.DNS.Queried("_2525._tcp.relay.test", dns.TypeTLSA) {
		t.Errorf("Status = %s; queries %v", got.Status, n.DNS.Queries())
	}
}

// TestCNAMEBaseDomains_DANE10_DANE6: with a secure CNAME expansion the expanded name is tried first, then the
// original; an insecure link anywhere leaves no TLSA lookup at all (the address records are insecure);
// intermediate names are never candidates.
func TestCNAMEBaseDomains_DANE10_DANE6(t *testing.T) {
	t.Parallel()
	n, r := newNet(t)
	n.DNS.SetDNSSEC("example.com", simnet.Secure)
	n.DNS.SetDNSSEC("hoster.test", simnet.Secure)
	n.DNS.SetDNSSEC("unsigned.hoster.test", simnet.Insecure)
	n.DNS.AddCNAME("mx1.example.com", "mx.hoster.test")
	n.DNS.AddA("mx.hoster.test", n.Block.Addr().Next())
	n.DNS.AddTLSA("_25._tcp.mx1.example.com", rec)

	got := lookup(t, r, "mx1.example.com", 25)
	if got.Status != dane.StatusSecure || got.BaseDomain != "mx1.example.com" {
		t.Errorf("TLSA at the original name only: %+v", got)
	}
	if !n.DNS.Queried("_25._tcp.mx.hoster.test", dns.TypeTLSA) {
		t.Error("the expanded name was not tried first")
	}

	n.DNS.AddTLSA("_25._tcp.mx.hoster.test", rec)
	if got := lookup(t, r, "mx1.example.com", 25); got.BaseDomain != "mx.hoster.test" {
		t.Errorf("BaseDomain = %q, want the expanded name mx.hoster.test", got.BaseDomain)
	}

	n.DNS.AddCNAME("mx2.example.com", "hop.hoster.test")
	n.DNS.AddCNAME("hop.hoster.test", "mx.hoster.test")
	n.DNS.AddTLSA("_25._tcp.hop.hoster.test", dnsx.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)})
	n.DNS.Remove("_25._tcp.mx.hoster.test", dns.TypeTLSA)
	n.DNS.AddTLSA("_25._tcp.mx2.example.com", rec)
	if got := lookup(t, r, "mx2.example.com", 25); got.BaseDomain != "mx2.example.com" {
		t.Errorf("BaseDomain = %q, want mx2.example.com (never the intermediate hop)", got.BaseDomain)
	}

	// A CNAME at the TLSA owner name does not change the base domain.
	n.DNS.AddA("mx4.example.com", n.Block.Addr().Next())
	n.DNS.AddCNAME("_25._tcp.mx4.example.com", "tlsa.hoster.test")
	n.DNS.AddTLSA("tlsa.hoster.test", rec)
	if got := lookup(t, r, "mx4.example.com", 25); got.Status != dane.StatusSecure || got.BaseDomain != "mx4.example.com" {
		t.Errorf("CNAME at the TLSA name: %+v, want secure with base domain mx4.example.com", got)
	}

	n.DNS.AddCNAME("mx3.example.com", "mx.unsigned.hoster.test")
	n.DNS.AddA("mx.unsigned.hoster.test", n.Block.Addr().Next())
	n.DNS.AddTLSA("_25._tcp.mx3.example.com", rec)
	if got := lookup(t, r, "mx3.example.com", 25); got.Status != dane.StatusNone {
		t.Errorf("insecure expansion: Status = %s, want none", got.Status)
	}
}
