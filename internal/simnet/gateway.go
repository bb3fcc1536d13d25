package simnet

import (
	"time"

	"github.com/mxgate/mxgate/internal/config"
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
	cfg.MTASTS.HTTPSPort = n.HTTPSPort
	cfg.MTASTS.AllowNetworks = []string{n.Block.String()}
	cfg.MTASTS.FetchTimeout = config.Duration(5 * time.Second)
	return cfg
}
