package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/diag"
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
	cfg, _, err := g.loadConfig()
	if err != nil {
		return err
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
	out, err := daemon.NewOutbound(cfg, nil, nil)
	if err != nil {
		return diag.Env{}, err
	}
	return diag.Env{
		Resolver: out.Resolver,
		HTTP:     out.HTTP,
		Roots:    out.Roots,
		Port:     cfg.Delivery.Port,
		Hostname: cfg.Delivery.Hostname,
		Timeout:  timeout,
	}, nil
}
