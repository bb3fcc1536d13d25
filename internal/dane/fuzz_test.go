package dane_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/testpki"
)

// FuzzVerify feeds Verify TLSA records as a zone could publish them against a fixed chain: it must never
// panic, and it may authenticate the chain only with a usable record that really matches.
func FuzzVerify(f *testing.F) {
	ca, err := testpki.NewCA("Fuzz CA", func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	c := ca.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
	var ch []*x509.Certificate
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			f.Fatal(err)
		}
		ch = append(ch, cert)
	}
	for _, r := range []dnsx.TLSA{dane.Make(3, 1, 1, ch[0]), dane.Make(2, 0, 2, ch[1]), dane.Make(2, 0, 0, ch[1]), {Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1}}} {
		f.Add(r.Usage, r.Selector, r.MatchingType, r.Data)
	}
	f.Fuzz(func(t *testing.T, usage, selector, mt uint8, data []byte) {
		rec := dnsx.TLSA{Usage: usage, Selector: selector, MatchingType: mt, Data: data}
		got := dane.Verify(ch, dane.VerifyRequest{RRset: []dnsx.TLSA{rec}, Names: []string{"mx1.example.com"}, Now: now})
		if got.Failure != "" {
			return
		}
		if !dane.Usable(rec) {
			t.Fatalf("%s is unusable but authenticated the chain", dane.String(rec))
		}
		switch rec.Usage {
		case dane.UsageDANEEE:
			if want := dane.Make(usage, selector, mt, ch[0]); string(want.Data) != string(data) {
				t.Fatalf("%s authenticated a leaf it does not match", dane.String(rec))
			}
		case dane.UsageDANETA:
			if want := dane.Make(usage, selector, mt, ch[1]); string(want.Data) != string(data) {
				t.Fatalf("%s authenticated a chain whose anchor it does not match", dane.String(rec))
			}
		}
	})
}
