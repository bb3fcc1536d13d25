package simnet

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// GatewayConfig returns a gateway configuration that lives in this simulated internet: its DNS server, its
// SMTP and HTTPS ports, policy fetches allowed to its loopback block, listeners on free loopback ports, and
// data in dataDir. The gateway must also trust RootPool (daemon.Options.Roots).
func (n *Net) GatewayConfig(dataDir string) *config.Config {
	cfg := config.Default()
	cfg.Data.Dir = dataDir
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.SMTP.Hostname = "gw.sim.example"
	cfg.Delivery.Hostname = "gw.sim.example"
	cfg.Delivery.Port = n.SMTPPort
	cfg.Delivery.ConnectTimeout = config.Duration(5 * time.Second)
	cfg.Delivery.CommandTimeout = config.Duration(30 * time.Second)
	cfg.DNS.Servers = []string{n.DNSAddr}
	cfg.DNS.Timeout = config.Duration(10 * time.Second)
	// Tests change records between deliveries and expect the next attempt to see them at once.
	cfg.DNS.Cache = false
	cfg.MTASTS.HTTPSPort = n.HTTPSPort
	cfg.MTASTS.AllowNetworks = []string{n.Block.String()}
	cfg.MTASTS.FetchTimeout = config.Duration(5 * time.Second)
	return cfg
}

// Resolver is a DNS client of this Net's server. Its timeout is generous: on loopback only a starved
// machine is slow, and a test must not turn that into a DNS failure.
func (n *Net) Resolver() *dnsx.Client {
	return &dnsx.Client{Servers: []string{n.DNSAddr}, Timeout: 10 * time.Second}
}

// PolicyClient is the MTA-STS and TLS report HTTPS client, built as the gateway builds it, pointed at this
// Net: its resolver, its HTTPS port, its trusted root, and the given overall timeout.
func (n *Net) PolicyClient(timeout time.Duration) *http.Client {
	resolver := n.Resolver()
	return mtasts.NewHTTPClient(mtasts.ClientOptions{
		LookupIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			ips, _, err := resolver.LookupIP(ctx, host)
			return ips, err
		},
		Port:    n.HTTPSPort,
		RootCAs: n.RootPool(),
		Timeout: timeout,
	})
}
