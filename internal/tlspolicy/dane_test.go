package tlspolicy

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

func TestDANEMode(t *testing.T) {
	dom := address.MustParseDomain("example.com")
	tests := []struct {
		name string
		s    Settings
		req  Request
		want DANEMode
	}{
		{"off by default", Settings{}, Request{Domain: dom, MXSecure: true}, DANEOff},
		{"Sender.EnableDANE", Settings{EnableDANE: true}, Request{Domain: dom, MXSecure: true}, DANEOn},
		{"rule dane whatever the switch", Settings{Rules: map[string]Rule{"example.com": {Level: LevelDANE}}}, Request{Domain: dom}, DANEOn},
		{"rule dane-only", Settings{Rules: map[string]Rule{"example.com": {Level: LevelDANEOnly}}}, Request{Domain: dom}, DANERequired},
		{"a stricter rule keeps DANE", Settings{EnableDANE: true, Rules: map[string]Rule{"example.com": {Level: LevelRequiredVerify}}}, Request{Domain: dom}, DANEOn},
		{"TLS-Required: No", Settings{EnableDANE: true}, Request{Domain: dom, TLSOptional: true}, DANEOff},
		{"TLS-Required: No keeps a dane rule", Settings{Rules: map[string]Rule{"example.com": {Level: LevelDANEOnly}}}, Request{Domain: dom, TLSOptional: true}, DANERequired},
		{"an override removes DANE", Settings{EnableDANE: true, Rules: map[string]Rule{"example.com": {Level: LevelOpportunistic, Override: true}}}, Request{Domain: dom}, DANEOff},
		{"a dane override keeps it", Settings{Rules: map[string]Rule{"example.com": {Level: LevelDANE, Override: true}}}, Request{Domain: dom}, DANEOn},
	}
	for _, tt := range tests {
		d := &Decider{Settings: func() *Settings { return &tt.s }, STS: fixedSTS{STSResult{Policy: enforcePolicy(t)}}}
		p, err := d.For(context.Background(), tt.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.DANE(); got != tt.want {
			t.Errorf("%s: DANE() = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestSetDANE shows each TLSA outcome's verdict and report policy (RFC 7672 Section 2.1.2, RFC 8460 Section
// 4.4), and SNI set to the TLSA base domain where DANE applies.
func TestSetDANE_DANE4_DANE16_DANE25_DANE28(t *testing.T) {
	dom := address.MustParseDomain("example.com")
	rec := dnsx.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}
	unusable := dnsx.TLSA{Usage: 1, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}
	tests := []struct {
		name        string
		mode        Level
		set         dane.TLSASet
		wantProceed bool
		wantFailure tlsrpt.ResultType
		wantPolicy  tlsrpt.Policy
		wantSNI     string
	}{
		{"secure", LevelDANE, dane.TLSASet{Status: dane.StatusSecure, BaseDomain: "mx.hoster.test", RRset: []dnsx.TLSA{rec}}, true, "",
			tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{dane.String(rec)}, Domain: "mx.hoster.test"}, "mx.hoster.test"},
		{"bogus", LevelDANE, dane.TLSASet{Status: dane.StatusBogus, BaseDomain: "mx1.example.com", Err: errors.New("bogus")}, false, tlsrpt.ResultDNSSECInvalid,
			tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{}, Domain: "mx1.example.com"}, "mx1.example.com"},
		{"failed", LevelDANE, dane.TLSASet{Status: dane.StatusFailed, Err: errors.New("timeout")}, false, "",
			tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, String: []string{}, Domain: "example.com"}, "mx1.example.com"},
		{"none", LevelDANE, dane.TLSASet{}, true, "",
			tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, String: []string{}, Domain: "example.com"}, "mx1.example.com"},
		{"none under dane-only", LevelDANEOnly, dane.TLSASet{}, false, tlsrpt.ResultDANERequired,
			tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{}, Domain: "example.com"}, "mx1.example.com"},
		{"unusable under dane-only", LevelDANEOnly, dane.TLSASet{Status: dane.StatusSecure, BaseDomain: "mx1.example.com", RRset: []dnsx.TLSA{unusable}}, false, tlsrpt.ResultTLSAInvalid,
			tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{dane.String(unusable)}, Domain: "mx1.example.com"}, "mx1.example.com"},
		{"unusable under dane", LevelDANE, dane.TLSASet{Status: dane.StatusSecure, BaseDomain: "mx1.example.com", RRset: []dnsx.TLSA{unusable}}, true, "",
			tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{dane.String(unusable)}, Domain: "mx1.example.com"}, "mx1.example.com"},
	}
	for _, tt := range tests {
		s := &Settings{Rules: map[string]Rule{"example.com": {Level: tt.mode}}}
		d := &Decider{Settings: func() *Settings { return s }}
		p, err := d.For(context.Background(), Request{Domain: dom, MXSecure: true})
		if err != nil {
			t.Fatal(err)
		}
		v := p.SetDANE("mx1.example.com", tt.set)
		if v.Proceed != tt.wantProceed || v.Failure != tt.wantFailure {
			t.Errorf("%s: verdict %+v, want proceed=%v failure=%q", tt.name, v, tt.wantProceed, tt.wantFailure)
		}
		got := p.ReportPolicyFor("mx1.example.com")
		if got.Type != tt.wantPolicy.Type || got.Domain != tt.wantPolicy.Domain || len(got.String) != len(tt.wantPolicy.String) {
			t.Errorf("%s: report policy %+v, want %+v", tt.name, got, tt.wantPolicy)
		}
		if sni := p.TLSConfig("mx1.example.com").ServerName; sni != tt.wantSNI {
			t.Errorf("%s: SNI %q, want %q", tt.name, sni, tt.wantSNI)
		}
	}
}

// TestDANEClientHello_DANE26: the ClientHello of a DANE session offers Go's usual cipher suites (all
// authenticated: crypto/tls has no anonymous suites) and TLS 1.2 or later, as any other session.
func TestDANEClientHello_DANE26(t *testing.T) {
	d := &Decider{Settings: func() *Settings { return &Settings{EnableDANE: true} }}
	p, err := d.For(context.Background(), Request{Domain: address.MustParseDomain("example.com"), MXSecure: true})
	if err != nil {
		t.Fatal(err)
	}
	p.SetDANE("mx1.example.com", dane.TLSASet{Status: dane.StatusSecure, BaseDomain: "mx1.example.com",
		RRset: []dnsx.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}}})
	c := p.TLSConfig("mx1.example.com")
	if c.CipherSuites != nil || c.MinVersion != tls.VersionTLS12 || c.ServerName != "mx1.example.com" {
		t.Errorf("config: suites %v, min version %x, SNI %q; want Go's defaults, TLS 1.2, SNI the base domain", c.CipherSuites, c.MinVersion, c.ServerName)
	}
	// A host with secure TLSA records never falls back to plain text.
	if v := p.STARTTLSNotOffered("mx1.example.com"); v.Proceed {
		t.Error("plain text allowed for a host with secure TLSA records")
	}
}

type fixedSTS struct{ r STSResult }

func (f fixedSTS) Lookup(context.Context, address.Domain) (STSResult, error) { return f.r, nil }

// TestDANERuleKeepsMTASTS: a dane rule adds DANE on top of an enforced MTA-STS policy: a host without TLSA
// records still needs the policy's verified TLS (the rule never removes a check), one with secure TLSA
// records is governed by them.
func TestDANERuleKeepsMTASTS(t *testing.T) {
	s := &Settings{EnableMTASTS: true, Rules: map[string]Rule{"example.com": {Level: LevelDANE}}}
	d := &Decider{Settings: func() *Settings { return s }, STS: fixedSTS{STSResult{Policy: enforcePolicy(t), ID: "1"}}}
	p, err := d.For(context.Background(), Request{Domain: address.MustParseDomain("example.com"), MXSecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Level != LevelRequiredVerify || p.DANE() != DANEOn {
		t.Fatalf("plan level %s, DANE %s; want required-verify from the enforce policy and DANE on", p.Level, p.DANE())
	}
	p.SetDANE("mx1.example.com", dane.TLSASet{Status: dane.StatusNone})
	if v := p.STARTTLSNotOffered("mx1.example.com"); v.Proceed {
		t.Error("a host without TLSA records lost the enforce policy's TLS requirement")
	}
	if got := p.NameFor("mx1.example.com"); got != "dane + mta-sts enforce" {
		t.Errorf("NameFor = %q", got)
	}
}

func enforcePolicy(t *testing.T) *mtasts.Policy {
	return mustPolicy(t, "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
}
