package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/diag"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// exitBlocked is the exit code of `sts lookup` and `sts test` when the domain's enforce policy would keep
// all its mail from being delivered, so that scripts can alert on it. 1 stays "the command failed".
const exitBlocked = 2

// addDiagCommands adds the local MTA-STS diagnostics `sts lookup` and `sts test` under the "sts" parent,
// which other files share (sts cache ...). They run in this process with the configuration's resolver,
// trust store and ports; they do not go through the daemon.
func addDiagCommands(root *cobra.Command, g *globals) {
	sts := parentCmd(root, "sts", "MTA-STS (RFC 8461) policies")
	timeout := diag.DefaultTimeout
	lookup := &cobra.Command{
		Use:   "lookup DOMAIN",
		Short: "Show a domain's MTA-STS record, policy, policy host certificate and MX coverage (live, not cached)",
		Long: "Looks up _mta-sts.DOMAIN, fetches the policy as delivery would, shows the policy host's certificate " +
			"and checks the domain's live MX hosts against the policy's mx patterns.\n\n" +
			"Exit status 2 when the policy is in enforce mode and covers none of the MX hosts.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiag(cmd.Context(), g, args[0], timeout, func(ctx context.Context, env diag.Env, d address.Domain) (diagReport, error) {
				r, err := diag.LookupSTS(ctx, env, d)
				return &r, err
			})
		},
	}
	test := &cobra.Command{
		Use:   "test DOMAIN",
		Short: "Probe each MX host: EHLO, STARTTLS, certificate, and what an enforced policy would decide",
		Long: "Connects to each MX host of DOMAIN in preference order (first address), says EHLO, negotiates " +
			"STARTTLS with SNI set to the MX host name, verifies the certificate, and ends with QUIT; no mail is " +
			"sent. With an MTA-STS policy it shows what delivery would decide per host in enforce mode.\n\n" +
			"Exit status 2 when the policy is in enforce mode and refuses every MX host that could be reached.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiag(cmd.Context(), g, args[0], timeout, func(ctx context.Context, env diag.Env, d address.Domain) (diagReport, error) {
				r, err := diag.TestMX(ctx, env, d)
				return &r, err
			})
		},
	}
	for _, c := range []*cobra.Command{lookup, test} {
		c.Flags().DurationVar(&timeout, "timeout", diag.DefaultTimeout, "bound for the policy fetch and for each MX session")
	}
	sts.AddCommand(lookup, test)
}

// diagReport is what both diagnostics return.
type diagReport interface {
	Text(w io.Writer) error
	Blocked() bool
}

func runDiag(ctx context.Context, g *globals, arg string, timeout time.Duration,
	run func(context.Context, diag.Env, address.Domain) (diagReport, error)) error {
	domain, err := address.ParseDomain(arg)
	if err != nil {
		return err
	}
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	env, err := diagEnv(cfg, timeout)
	if err != nil {
		return err
	}
	rep, err := run(ctx, env, domain)
	if err != nil {
		return err
	}
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("writing JSON: %w", err)
		}
	} else if err := rep.Text(g.stdout); err != nil {
		return err
	}
	if rep.Blocked() {
		return exitError{code: exitBlocked}
	}
	return nil
}

// diagEnv builds the diagnostics' view of the world from the configuration, the way the daemon builds
// delivery's: the configured resolver, the policy HTTP client with its port and address restrictions, and
// the system roots plus tls.ca_file.
func diagEnv(cfg *config.Config, timeout time.Duration) (diag.Env, error) {
	roots, err := diagRoots(cfg.TLS.CAFile)
	if err != nil {
		return diag.Env{}, err
	}
	resolver := &dnsx.Client{Timeout: cfg.DNS.Timeout.Duration()}
	for _, ap := range cfg.DNS.ServerAddrs() {
		resolver.Servers = append(resolver.Servers, ap.String())
	}
	httpClient := mtasts.NewHTTPClient(mtasts.ClientOptions{
		LookupIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			ips, _, err := resolver.LookupIP(ctx, host)
			return ips, err
		},
		Port:      cfg.MTASTS.HTTPSPort,
		RootCAs:   roots,
		CheckAddr: mtasts.PublicOnly(cfg.MTASTS.AllowPrefixes()),
		Timeout:   cfg.MTASTS.FetchTimeout.Duration(),
	})
	return diag.Env{
		Resolver: resolver,
		HTTP:     httpClient,
		Roots:    roots,
		Port:     cfg.Delivery.Port,
		Hostname: cfg.Delivery.Hostname,
		Timeout:  timeout,
	}, nil
}

// diagRoots is the daemon's trust store: the system pool plus the PEM roots of tls.ca_file.
func diagRoots(caFile string) (*x509.CertPool, error) {
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
