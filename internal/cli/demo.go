package cli

import "github.com/spf13/cobra"

func demoCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "Run a gateway against a simulated internet and show what happens"}
}
