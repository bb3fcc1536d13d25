package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/diag"
	"github.com/mxgate/mxgate/internal/mtasts"
)

// Exit codes of `sts lookup` and `sts test`, so that scripts can alert on them (docs/operations.md). 0: the
// answer is complete; 1: the command failed (usage, configuration).
const (
	// exitBlocked: the domain's enforce policy keeps all its mail from being delivered.
	exitBlocked = 2
	// exitUnknown: a lookup failed temporarily and no cached policy stands in; delivery defers. Never "no
	// policy".
	exitUnknown = 3
	// exitNothingToTest: `sts test` found no MX host to test.
	exitNothingToTest = 4
)

// exitCodes maps a diagnostic's verdict to its exit code.
var exitCodes = map[diag.Verdict]int{diag.VerdictBlocked: exitBlocked, diag.VerdictUnknown: exitUnknown, diag.VerdictNothingToTest: exitNothingToTest}

const exitCodesHelp = "\n\nExit status: 0 the answer is complete; 1 the command failed; 2 the enforce policy blocks all mail to " +
	"the domain; 3 a lookup failed temporarily and no cached policy stands in (delivery defers: never \"no policy\"); " +
	"4 no MX host to test (sts test)."

// addDiagCommands adds the local MTA-STS diagnostics `sts lookup` and `sts test` under the "sts" parent,
// which other files share (sts cache ...). They run in this process with the configuration's resolver,
// trust store and ports; they do not go through the daemon.
func addDiagCommands(root *cobra.Command, g *globals) {
	sts := parentCmd(root, "sts", "MTA-STS (RFC 8461) policies")
	timeout := diag.DefaultTimeout
	lookup := &cobra.Command{
		Use:   "lookup DOMAIN",
		Short: "Show a domain's MTA-STS record, policy, policy host certificate and MX coverage, live and cached side by side",
		Long: "Looks up _mta-sts.DOMAIN, fetches the policy as delivery would, shows the policy host's certificate " +
			"and checks the domain's live MX hosts against the policy's mx patterns. Beside the live view it shows " +
			"the running gateway's cached policy (through the admin API), and says which one delivery applies." +
			exitCodesHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiag(cmd.Context(), g, args[0], timeout, func(ctx context.Context, env diag.Env, d address.Domain) (diagReport, error) {
				r, err := diag.LookupSTS(ctx, env, d)
				if err == nil {
					r.Cache = cachedView(ctx, g, d)
				}
				return &r, err
			})
		},
	}
	test := &cobra.Command{
		Use:   "test DOMAIN",
		Short: "Probe each MX host: EHLO, STARTTLS, certificate, and what an enforced policy would decide",
		Long: "Connects to each MX host of DOMAIN in preference order (first address), says EHLO, negotiates " +
			"STARTTLS with SNI set to the MX host name, verifies the certificate, and ends with QUIT; no mail is " +
			"sent. With an MTA-STS policy it shows what delivery would decide per host in enforce mode (the plan " +
			"comes from delivery's own plan builder)." + exitCodesHelp,
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
	Verdict() diag.Verdict
}

// cachedView asks the running gateway for its cached policy of domain. A gateway that cannot be asked is
// part of the answer, not an error: the live view still stands.
func cachedView(ctx context.Context, g *globals, domain address.Domain) *diag.CacheView {
	c, err := adminClient(g)
	if err != nil {
		return &diag.CacheView{Error: err.Error()}
	}
	e, err := c.STSShow(ctx, domain.String())
	var ae *admin.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		return &diag.CacheView{}
	case err != nil:
		return &diag.CacheView{Error: err.Error()}
	}
	return &diag.CacheView{Entry: &diag.CachedPolicy{ID: e.ID, Mode: mtasts.Mode(e.Mode), MX: e.MX, Fetched: e.Fetched, Expires: e.Expires, Expired: e.Expired}}
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
	if code, ok := exitCodes[rep.Verdict()]; ok {
		return exitError{code: code}
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
