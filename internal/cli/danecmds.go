package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/diag"
)

// addDANECommands adds the local DANE diagnostics `dane lookup` and `dane test`. Like `sts lookup` and
// `sts test` they run in this process with the configuration's resolver (and its list of validating
// resolvers), trust store and ports.
func addDANECommands(root *cobra.Command, g *globals) {
	d := parentCmd(root, "dane", "DANE for SMTP (RFC 7672): TLSA records and DNSSEC")
	timeout := diag.DefaultTimeout
	lookup := &cobra.Command{
		Use:   "lookup DOMAIN",
		Short: "Show whether a domain's MX RRset is DNSSEC-secure and each MX host's TLSA records",
		Long: "Resolves DOMAIN's MX hosts and, for each, its addresses and TLSA records (_25._tcp.HOST, or the " +
			"CNAME-expanded name first), with their DNSSEC status as the validating resolver reports it, and " +
			"says what delivery with DANE does with the host before connecting. Connects to nothing.\n\n" +
			"Exit status 2 when DANE leaves no MX host usable (bogus or failed TLSA lookups).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiag(cmd.Context(), g, args[0], timeout, func(ctx context.Context, env diag.Env, dom address.Domain) (diagReport, error) {
				r, err := diag.LookupDANE(ctx, env, dom)
				return &r, err
			})
		},
	}
	test := &cobra.Command{
		Use:   "test DOMAIN",
		Short: "Probe each MX host with DANE: STARTTLS with SNI set to the TLSA base domain, certificate against TLSA",
		Long: "Does what `dane lookup` does, then connects to each usable MX host (first address), says EHLO, " +
			"negotiates STARTTLS with SNI set to the TLSA base domain, checks the certificate chain against the " +
			"TLSA records as delivery does, and ends with QUIT; no mail is sent.\n\n" +
			"Exit status 2 when DANE refuses every MX host that could be reached.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiag(cmd.Context(), g, args[0], timeout, func(ctx context.Context, env diag.Env, dom address.Domain) (diagReport, error) {
				r, err := diag.TestDANE(ctx, env, dom)
				return &r, err
			})
		},
	}
	for _, c := range []*cobra.Command{lookup, test} {
		c.Flags().DurationVar(&timeout, "timeout", diag.DefaultTimeout, "bound for each MX session")
	}
	d.AddCommand(lookup, test)
}
