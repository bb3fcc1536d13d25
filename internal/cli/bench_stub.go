package cli

import "github.com/spf13/cobra"

// benchCmd is replaced by the load tool command.
func benchCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Measure throughput against a simulated internet", Hidden: true}
}
