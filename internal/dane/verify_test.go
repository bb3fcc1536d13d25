package dane_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func newCA(t *testing.T, name string) *testpki.CA {
	t.Helper()
	ca, err := testpki.NewCA(name, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// chain returns the certificates of c, leaf first, as a server sends them.
func chain(t *testing.T, c tls.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cert)
	}
	return out
}

func wrong(t dnsx.TLSA) dnsx.TLSA {
	d := append([]byte(nil), t.Data...)
	d[len(d)-1] ^= 0xff
	t.Data = d
	return t
}

// TestSelectorsAndMatchingTypes_DANE17 authenticates a leaf with each selector and matching type, and shows
// that records with unknown parameters or data of the wrong length are unusable.
func TestSelectorsAndMatchingTypes_DANE17(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "Some CA")
	ch := chain(t, ca.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	for _, sel := range []uint8{0, 1} {
		for _, mt := range []uint8{0, 1, 2} {
			rec := dane.Make(3, sel, mt, ch[0])
			got := dane.Verify(ch, dane.VerifyRequest{RRset: []dnsx.TLSA{rec}, Now: now})
			if got.Failure != "" {
				t.Errorf("3 %d %d: %s %s", sel, mt, got.Failure, got.Detail)
			}
		}
	}
	good := dane.Make(3, 1, 1, ch[0])
	for _, bad := range []dnsx.TLSA{
		{Usage: 3, Selector: 2, MatchingType: 1, Data: good.Data},
		{Usage: 3, Selector: 1, MatchingType: 3, Data: good.Data},
		{Usage: 3, Selector: 1, MatchingType: 1, Data: good.Data[:31]},
		{Usage: 3, Selector: 1, MatchingType: 2, Data: good.Data},
		{Usage: 4, Selector: 1, MatchingType: 1, Data: good.Data},
		{Usage: 3, Selector: 1, MatchingType: 0},
	} {
		if dane.Usable(bad) {
			t.Errorf("%s is usable", dane.String(bad))
		}
	}
}

// TestDANEEEIgnoresNamesAndDates_DANE18: a self-signed, expired leaf for another name matches 3 1 1.
func TestDANEEEIgnoresNamesAndDates_DANE18(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "Nobody")
	c := ca.MustIssue(testpki.Leaf{DNSNames: []string{"wrong.test"}, CommonName: "wrong.test",
		NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(-30 * 24 * time.Hour)})
	ch := chain(t, c)[:1]
	got := dane.Verify(ch, dane.VerifyRequest{RRset: []dnsx.TLSA{dane.Make(3, 1, 1, ch[0])}, Names: []string{"mx1.example.com"}, Now: now})
	if got.Failure != "" {
		t.Fatalf("DANE-EE: %s %s", got.Failure, got.Detail)
	}
	if got.Matched.Usage != 3 {
		t.Errorf("Matched = %s", dane.String(got.Matched))
	}
}

// TestDANETA_DANE19_DANE20_DANE21 validates DANE-TA(2) chains: the anchor in the chain, names checked against
// the reference identifiers (the TLSA base domain, the next-hop domain), the CN-ID when there is no SAN,
// wildcards of one label, and dates applying to the chain.
func TestDANETA_DANE19_DANE20_DANE21(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "Hoster TA")
	ta := ca.Cert
	rec := dane.Make(2, 0, 1, ta)
	names := []string{"mx1.example.com", "example.com"}
	tests := []struct {
		name  string
		leaf  testpki.Leaf
		rrset []dnsx.TLSA
		noTA  bool // the server leaves the trust anchor out of its chain
		want  tlsrpt.ResultType
	}{
		{name: "base domain in SAN_DANE19", leaf: testpki.Leaf{DNSNames: []string{"mx1.example.com"}}, rrset: []dnsx.TLSA{rec}},
		{name: "other name_DANE19", leaf: testpki.Leaf{DNSNames: []string{"other.test"}}, rrset: []dnsx.TLSA{rec}, want: tlsrpt.ResultCertificateHostMismatch},
		{name: "anchor left out_DANE19", leaf: testpki.Leaf{DNSNames: []string{"mx1.example.com"}}, rrset: []dnsx.TLSA{rec}, noTA: true, want: tlsrpt.ResultTLSAInvalid},
		{name: "anchor left out but full record_DANE19", leaf: testpki.Leaf{DNSNames: []string{"mx1.example.com"}}, rrset: []dnsx.TLSA{dane.Make(2, 0, 0, ta)}, noTA: true},
		{name: "SPKI of the anchor_DANE19", leaf: testpki.Leaf{DNSNames: []string{"mx1.example.com"}}, rrset: []dnsx.TLSA{dane.Make(2, 1, 2, ta)}},
		{name: "expired leaf_DANE19", leaf: testpki.Leaf{DNSNames: []string{"mx1.example.com"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, rrset: []dnsx.TLSA{rec}, want: tlsrpt.ResultCertificateExpired},
		{name: "next-hop domain only_DANE20", leaf: testpki.Leaf{DNSNames: []string{"example.com"}}, rrset: []dnsx.TLSA{rec}},
		{name: "no SAN, CN_DANE21", leaf: testpki.Leaf{CommonName: "mx1.example.com"}, rrset: []dnsx.TLSA{rec}},
		{name: "SAN present, CN ignored_DANE21", leaf: testpki.Leaf{DNSNames: []string{"other.test"}, CommonName: "mx1.example.com"}, rrset: []dnsx.TLSA{rec}, want: tlsrpt.ResultCertificateHostMismatch},
		{name: "wildcard one label_DANE21", leaf: testpki.Leaf{DNSNames: []string{"*.example.com"}}, rrset: []dnsx.TLSA{rec}},
		{name: "partial wildcard_DANE21", leaf: testpki.Leaf{DNSNames: []string{"mx*.example.com"}}, rrset: []dnsx.TLSA{rec}, want: tlsrpt.ResultCertificateHostMismatch},
		{name: "a TA record does not match the leaf", leaf: testpki.Leaf{DNSNames: []string{"mx1.example.com"}}, rrset: []dnsx.TLSA{wrong(rec)}, want: tlsrpt.ResultTLSAInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := chain(t, ca.MustIssue(tt.leaf))
			if tt.noTA {
				ch = ch[:1]
			}
			got := dane.Verify(ch, dane.VerifyRequest{RRset: tt.rrset, Names: names, Now: now})
			if got.Failure != tt.want {
				t.Errorf("Failure = %q (%s), want %q", got.Failure, got.Detail, tt.want)
			}
		})
	}
	// A wildcard never matches two labels.
	ch := chain(t, ca.MustIssue(testpki.Leaf{DNSNames: []string{"*.example.com"}}))
	if got := dane.Verify(ch, dane.VerifyRequest{RRset: []dnsx.TLSA{rec}, Names: []string{"a.mx1.example.com"}, Now: now}); got.Failure != tlsrpt.ResultCertificateHostMismatch {
		t.Errorf("wildcard over two labels: %q", got.Failure)
	}
}

// TestNoMatchIsAFailure_DANE22 shows a usable RRset that does not match fails, whatever else the chain has.
func TestNoMatchIsAFailure_DANE22(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "Public-looking CA")
	ch := chain(t, ca.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	got := dane.Verify(ch, dane.VerifyRequest{RRset: []dnsx.TLSA{wrong(dane.Make(3, 1, 1, ch[0]))}, Names: []string{"mx1.example.com"}, Now: now})
	if got.Failure != tlsrpt.ResultTLSAInvalid || got.ReasonCode != dane.ReasonNoMatch {
		t.Errorf("got %q/%q, want tlsa-invalid/%s", got.Failure, got.ReasonCode, dane.ReasonNoMatch)
	}
}

// TestDigestAgility_DANE23: among records of one usage and selector only the strongest digest counts.
func TestDigestAgility_DANE23(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "Some CA")
	ch := chain(t, ca.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	sha256 := dane.Make(3, 1, 1, ch[0])
	sha512 := dane.Make(3, 1, 2, ch[0])
	tests := []struct {
		name  string
		rrset []dnsx.TLSA
		ok    bool
	}{
		{"weak wrong, strong right", []dnsx.TLSA{wrong(sha256), sha512}, true},
		{"weak right, strong wrong", []dnsx.TLSA{sha256, wrong(sha512)}, false},
		{"full record always counts", []dnsx.TLSA{wrong(sha512), dane.Make(3, 1, 0, ch[0])}, true},
		{"other selector is separate", []dnsx.TLSA{wrong(sha512), dane.Make(3, 0, 1, ch[0])}, true},
	}
	for _, tt := range tests {
		got := dane.Verify(ch, dane.VerifyRequest{RRset: tt.rrset, Now: now})
		if (got.Failure == "") != tt.ok {
			t.Errorf("%s: Failure = %q, want ok=%v", tt.name, got.Failure, tt.ok)
		}
	}
}

// TestPKIXUsagesUnusable_DANE24_DANE12: PKIX-TA(0) and PKIX-EE(1) records, even matching, are unusable; an
// RRset of only unusable records authenticates nothing (tlsa-invalid, reason tlsa-unusable).
func TestPKIXUsagesUnusable_DANE24_DANE12(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "Some CA")
	ch := chain(t, ca.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}}))
	rrset := []dnsx.TLSA{dane.Make(0, 0, 1, ch[1]), dane.Make(1, 1, 1, ch[0]), {Usage: 4, Selector: 1, MatchingType: 1, Data: dane.Make(3, 1, 1, ch[0]).Data}}
	got := dane.Verify(ch, dane.VerifyRequest{RRset: rrset, Names: []string{"mx1.example.com"}, Now: now})
	if got.Failure != tlsrpt.ResultTLSAInvalid || got.ReasonCode != dane.ReasonUnusable {
		t.Errorf("got %q/%q, want tlsa-invalid/%s", got.Failure, got.ReasonCode, dane.ReasonUnusable)
	}
	if set := (dane.TLSASet{Status: dane.StatusSecure, RRset: rrset}); set.Usable() {
		t.Error("an RRset of PKIX and unknown usages is usable")
	}
}

// TestPolicyStrings_DANE28 shows the presentation form reports carry as policy-string.
func TestPolicyStrings_DANE28(t *testing.T) {
	t.Parallel()
	got := dane.Strings([]dnsx.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0xab, 0xcd}}, {Usage: 2, Selector: 0, MatchingType: 2, Data: []byte{0x01}}})
	want := []string{"3 1 1 ABCD", "2 0 2 01"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Strings = %q, want %q", got, want)
	}
}
