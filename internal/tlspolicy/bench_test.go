package tlspolicy

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// warmSTS is an MTA-STS source that always has the policy: the policy cache when it is warm.
type warmSTS struct{ res STSResult }

func (w warmSTS) Lookup(context.Context, address.Domain) (STSResult, error) { return w.res, nil }

// BenchmarkDecisionWarmCache is the TLS decision for one delivery on a warm policy cache: For, then
// AllowMX and TLSConfig for the MX host, as delivery asks them before dialing. Target (issue 6): < 5 µs.
func BenchmarkDecisionWarmCache(b *testing.B) {
	pol, err := mtasts.ParsePolicy([]byte("version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n"))
	if err != nil {
		b.Fatal(err)
	}
	dom, err := address.ParseDomain("example.com")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	settings := &Settings{EnableMTASTS: true, Rules: map[string]Rule{"other.example": {Level: LevelRequiredVerify}}}
	d := &Decider{
		Settings: func() *Settings { return settings },
		STS:      warmSTS{STSResult{Policy: pol, ID: "20260310"}},
		Roots:    x509.NewCertPool(),
		Now:      func() time.Time { return now },
	}
	ctx := context.Background()
	b.Run("For", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.For(ctx, Request{Domain: dom}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("For+AllowMX+TLSConfig", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := d.For(ctx, Request{Domain: dom})
			if err != nil {
				b.Fatal(err)
			}
			if v := p.AllowMX("mx1.example.com"); !v.Proceed {
				b.Fatalf("AllowMX refused: %+v", v)
			}
			if p.TLSConfig("mx1.example.com") == nil {
				b.Fatal("no TLS config")
			}
		}
	})
}
