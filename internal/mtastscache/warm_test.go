package mtastscache

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// countingResolver is a real caching dnsx.Client that counts the TXT lookups that may reach the network.
type countingResolver struct {
	*dnsx.Client
	txtLookups atomic.Int64
}

func (r *countingResolver) LookupTXT(ctx context.Context, name string) ([]string, dnsx.Result, error) {
	r.txtLookups.Add(1)
	return r.Client.LookupTXT(ctx, name)
}

// warmEnv is env with the cache on a real caching resolver asking a loopback DNS server.
func warmEnv(t *testing.T) (*env, *dnstest.Server, *countingResolver) {
	t.Helper()
	e := newEnv(t)
	srv := dnstest.New(t)
	client := srv.Client()
	client.Cache = &dnsx.Cache{Now: e.clock.Now}
	res := &countingResolver{Client: client}
	c, err := New(context.Background(), Options{Store: e.st, Resolver: res, Fetcher: e.fetcher, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.cache = c
	return e, srv, res
}

// TestWarmGetUsesTheCachedTXTAnswer_STS55: while the resolver's cache holds the _mta-sts TXT answer (within
// its TTL) and it names the cached policy's id, Get serves the policy without a lookup that could reach the
// network; once the TTL ends the record is asked again, and a changed id is fetched (STS-56).
func TestWarmGetUsesTheCachedTXTAnswer_STS55(t *testing.T) {
	t.Parallel()
	e, srv, res := warmEnv(t)
	srv.Add(`_mta-sts.example.com. 300 IN TXT "v=STSv1; id=1"`)
	e.policy.serve("example.com", http.StatusOK, pEnf(604800))

	check(t, "first", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	for range 50 {
		check(t, "warm", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache})
	}
	if n := res.txtLookups.Load(); n != 1 {
		t.Errorf("TXT lookups for 51 Gets within the TTL = %d, want 1 (the warm path reads the resolver's cache)", n)
	}
	if n := srv.QueryCount("_mta-sts.example.com", dns.TypeTXT); n != 1 {
		t.Errorf("TXT queries = %d, want 1", n)
	}

	// The TTL ends and the domain has published a new id: asked again, and fetched.
	srv.Remove("_mta-sts.example.com", dns.TypeTXT)
	srv.Add(`_mta-sts.example.com. 300 IN TXT "v=STSv1; id=2"`)
	e.policy.serve("example.com", http.StatusOK, "version: STSv1\r\nmode: testing\r\nmx: mx1.example.com\r\nmax_age: 604800\r\n")
	e.clock.Advance(300 * time.Second)
	check(t, "after the TTL", e.get("example.com"), summary{Mode: mtasts.ModeTesting, ID: "2", Source: SourceFetched})
	if n := srv.QueryCount("_mta-sts.example.com", dns.TypeTXT); n != 2 {
		t.Errorf("TXT queries after the TTL = %d, want 2", n)
	}
	checkFetches(t, e, "example.com", 2)
}

// TestWarmGetNeverServesAnExpiredPolicy_STS54: a TXT answer still cached does not keep an expired policy in
// force: Get fetches it again.
func TestWarmGetNeverServesAnExpiredPolicy_STS54(t *testing.T) {
	t.Parallel()
	e, srv, _ := warmEnv(t)
	srv.Add(`_mta-sts.example.com. 86400 IN TXT "v=STSv1; id=1"`)
	e.policy.serve("example.com", http.StatusOK, pEnf(600))
	check(t, "first", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	e.clock.Advance(600 * time.Second)
	check(t, "expired", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	checkFetches(t, e, "example.com", 2)
}
