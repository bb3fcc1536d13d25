package daemon_test

import (
	"testing"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/dnsx"
)

// TestOutboundDNSCacheFollowsTheConfiguration: dns.cache (on by default) gives the gateway's resolver a
// cache; off, every lookup asks the servers.
func TestOutboundDNSCacheFollowsTheConfiguration(t *testing.T) {
	t.Parallel()
	for _, cache := range []bool{true, false} {
		cfg := config.Default()
		if !cfg.DNS.Cache {
			t.Fatal("dns.cache is off by default, want on")
		}
		cfg.DNS.Cache = cache
		cfg.DNS.Servers = []string{"127.0.0.1"}
		out, err := daemon.NewOutbound(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := out.Resolver.(*dnsx.Client)
		if !ok {
			t.Fatalf("resolver is %T, want *dnsx.Client", out.Resolver)
		}
		if got := c.Cache != nil; got != cache {
			t.Errorf("dns.cache = %v: resolver has a cache: %v", cache, got)
		}
	}
}
