package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/netip"
	"os"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// Outbound is what reaches the internet on the gateway's behalf besides SMTP: the resolver, the trust store,
// and the hardened HTTPS client for MTA-STS policies and TLS reports. The daemon and the diagnostics build
// it the same way, so `mxgate sts test` sees what delivery sees.
type Outbound struct {
	Resolver dnsx.Resolver
	Roots    *x509.CertPool
	HTTP     *http.Client
}

// NewOutbound builds the outbound side from cfg. A non-nil roots or resolver replaces the configured one
// (tests and the demo trust only their own CA and ask their own DNS server).
func NewOutbound(cfg *config.Config, roots *x509.CertPool, resolver dnsx.Resolver) (Outbound, error) {
	if roots == nil {
		var err error
		if roots, err = trustStore(cfg.TLS.CAFile); err != nil {
			return Outbound{}, err
		}
	}
	if resolver == nil {
		c := &dnsx.Client{Timeout: cfg.DNS.Timeout.Duration(), Validating: cfg.DNS.ValidatingPrefixes()}
		if cfg.DNS.Cache {
			c.Cache = &dnsx.Cache{}
		}
		for _, ap := range cfg.DNS.ServerAddrs() {
			c.Servers = append(c.Servers, ap.String())
		}
		resolver = c
	}
	httpClient := mtasts.NewHTTPClient(mtasts.ClientOptions{
		LookupIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			ips, _, err := resolver.LookupIP(ctx, host)
			return ips, err
		},
		Port:    cfg.MTASTS.HTTPSPort,
		RootCAs: roots,
		// Policy and report hosts are never private, loopback or link-local addresses unless a lab
		// allowlists them (checked on every connection, after resolution).
		CheckAddr: mtasts.PublicOnly(cfg.MTASTS.AllowPrefixes()),
		Timeout:   cfg.MTASTS.FetchTimeout.Duration(),
	})
	return Outbound{Resolver: resolver, Roots: roots, HTTP: httpClient}, nil
}

// trustStore is the system pool plus the PEM roots of tls.ca_file.
func trustStore(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", caFile)
	}
	return pool, nil
}
