package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/demo"
)

func demoCmd(g *globals) *cobra.Command {
	var keep, verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a gateway against a simulated internet and show how each message left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := demo.Options{Out: g.stdout, Keep: keep}
			if verbose {
				o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			return demo.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the gateway and the simulated internet running until interrupted")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the gateway's logs")
	return cmd
}
