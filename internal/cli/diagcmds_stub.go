package cli

import "github.com/spf13/cobra"

// addDiagCommands is replaced by the diagnostics commands (sts lookup, sts test).
func addDiagCommands(root *cobra.Command, g *globals) {}
