package cli

import "github.com/spf13/cobra"

// addAdminCommands adds the verbs that talk to a running gateway through the admin API.
func addAdminCommands(root *cobra.Command, g *globals) {}
