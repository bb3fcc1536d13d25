package mtastscache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// decisionSTS adapts the cache to the decision point, as the daemon does.
type decisionSTS struct{ c *Cache }

func (s decisionSTS) Lookup(ctx context.Context, domain address.Domain) (tlspolicy.STSResult, error) {
	l, err := s.c.Get(ctx, domain)
	if err != nil {
		return tlspolicy.STSResult{}, err
	}
	return tlspolicy.STSResult{Policy: l.Policy, ID: l.ID, Failure: l.Failure, FailureDetail: l.FailureDetail}, nil
}

// BenchmarkDecisionWarmPolicyCache is the TLS decision for one delivery with the real policy cache behind it:
// Get (the _mta-sts TXT record from a caching dnsx.Client that asked a loopback DNS server, the policy fetched
// over HTTPS once and kept in SQLite), then For, AllowMX and TLSConfig as delivery asks them before dialing.
func BenchmarkDecisionWarmPolicyCache(b *testing.B) {
	ca, err := testpki.NewCA("mtastscache bench root", nil)
	if err != nil {
		b.Fatal(err)
	}
	policy := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, policy)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.MustIssue(testpki.Leaf{DNSNames: []string{"mta-sts.example.com"}})}}
	srv.StartTLS()
	b.Cleanup(srv.Close)

	dnsSrv := dnstest.New(b)
	dnsSrv.Add(`_mta-sts.example.com. 3600 IN TXT "v=STSv1; id=20260310"`)
	resolver := dnsSrv.Client()
	resolver.Timeout = 5 * time.Second
	resolver.Cache = &dnsx.Cache{}

	db, err := store.OpenSQLite(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	cache, err := New(context.Background(), Options{DB: db, Resolver: resolver, Fetcher: &mtasts.Fetcher{
		Client: mtasts.NewHTTPClient(mtasts.ClientOptions{
			LookupIP: func(context.Context, string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			},
			Port:    srv.Listener.Addr().(*net.TCPAddr).Port,
			RootCAs: ca.Pool(),
			Timeout: 10 * time.Second,
		}),
		Timeout: 10 * time.Second,
	}})
	if err != nil {
		b.Fatal(err)
	}
	dom := address.MustParseDomain("example.com")
	settings := &tlspolicy.Settings{EnableMTASTS: true, Rules: map[string]tlspolicy.Rule{"other.example": {Level: tlspolicy.LevelRequiredVerify}}}
	d := &tlspolicy.Decider{
		Settings: func() *tlspolicy.Settings { return settings },
		STS:      decisionSTS{cache},
		Roots:    x509.NewCertPool(),
	}
	ctx := context.Background()
	// Warm the cache: the first decision fetches the policy.
	if l, err := cache.Get(ctx, dom); err != nil || l.Source != SourceFetched || l.Policy == nil {
		b.Fatalf("warming Get = %+v, %v; want the fetched policy", l, err)
	}
	b.Run("Get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if l, err := cache.Get(ctx, dom); err != nil || l.Policy == nil {
				b.Fatalf("Get = %+v, %v", l, err)
			}
		}
	})
	b.Run("For+AllowMX+TLSConfig", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := d.For(ctx, tlspolicy.Request{Domain: dom})
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
	if st := resolver.Cache.Stats(); st.Misses != 1 {
		b.Errorf("DNS cache misses = %d, want 1 (every decision after the first answered from the cache)", st.Misses)
	}
}
