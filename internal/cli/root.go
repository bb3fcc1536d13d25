// Package cli is mxgate's command line: the daemon (serve), the demo, configuration checks, and the
// administration verbs, which are clients of the admin HTTP API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/version"
)

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return mainIO(args, os.Stdin, stdout, stderr, osEnvironment())
}

// mainIO is Main with standard input, which confirmations read, and the environment given.
func mainIO(args []string, stdin io.Reader, stdout, stderr io.Writer, env environment) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(stdin, stdout, stderr, env)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(stderr, "mxgate:", err)
		return 1
	}
	return 0
}

// exitError carries an exit code for commands whose failure was already reported.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// globals are the flags every command shares.
type globals struct {
	configPath string
	adminURL   string
	token      string
	json       bool
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
	env        environment
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer, env environment) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr, env: env}
	root := &cobra.Command{
		Use:           "mxgate",
		Short:         "Outbound mail gateway with MTA-STS, REQUIRETLS and TLS reporting",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", "", "configuration file (default: $"+ConfigEnv+", else "+DefaultConfigPath+" if it exists, else built-in defaults)")
	root.PersistentFlags().StringVar(&g.adminURL, "admin", "", "admin API base URL (default: from the configuration's admin.listen)")
	root.PersistentFlags().StringVar(&g.token, "token", "", "admin API token (default: read from the data directory)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print machine-readable JSON")
	root.AddCommand(serveCmd(g), checkConfigCmd(g), demoCmd(g), benchCmd(g), versionCmd(g), manCmd(g))
	addAdminCommands(root, g)
	root.AddCommand(traceCmd(g))
	addDiagCommands(root, g)
	addDANECommands(root, g)
	addCompletions(root, g)
	return root
}
