package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/sdnotify"
)

func serveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (SMTP intake, queue, delivery, admin API)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cfgPath, err := g.loadConfig()
			if err != nil {
				return err
			}
			log := newLogger(cfg, g)
			if cfgPath == "" {
				log.Info("configuration: no file, built-in defaults", "file", "")
			} else {
				log.Info("configuration", "file", cfgPath)
			}
			for _, w := range cfg.Warnings() {
				log.Warn("configuration", "warning", w)
			}
			for _, w := range secretFileWarnings(cfgPath, cfg) {
				log.Warn("file permissions", "warning", w)
			}
			notifier := sdnotify.Notifier{Addr: g.env.getenv(sdnotify.Socket)}
			d, err := daemon.New(cmd.Context(), daemon.Options{Config: cfg, Logger: log, Notify: notifier.Notify})
			if err != nil {
				return err
			}
			return d.Run(cmd.Context())
		},
	}
}

func newLogger(cfg *config.Config, g *globals) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

func checkConfigCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config [FILE]",
		Short: "Check a configuration file and print every error with its key path",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			} else {
				p, _, err := g.configFile()
				if err != nil {
					return err
				}
				path = p
			}
			cfg, err := config.Load(path)
			if err == nil {
				// The checks serve makes before it starts (daemon.New), short of binding ports.
				err = config.Preflight(cfg)
			}
			if err != nil {
				fmt.Fprintln(g.stderr, err)
				return exitError{code: 1}
			}
			for _, w := range cfg.Warnings() {
				fmt.Fprintln(g.stdout, "warning:", w)
			}
			name := path
			if name == "" {
				name = "built-in defaults"
			}
			fmt.Fprintf(g.stdout, "%s: OK\n", name)
			return nil
		},
	}
}

// secretFileWarnings names the files holding secrets (the configuration when it has passwords, the SMTP TLS
// key) that other users can read.
func secretFileWarnings(configPath string, cfg *config.Config) []string {
	var out []string
	check := func(path, what string) {
		if path == "" {
			return
		}
		fi, err := os.Stat(path)
		if err != nil {
			return
		}
		if fi.Mode().Perm()&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s %s is readable by group or others (mode %v): chmod 600 it", what, path, fi.Mode().Perm()))
		}
	}
	hasSecrets := len(cfg.SMTP.Users) > 0
	for _, r := range cfg.Routes {
		hasSecrets = hasSecrets || r.AuthPassword != ""
	}
	if hasSecrets {
		check(configPath, "configuration file with passwords")
	}
	check(cfg.SMTP.TLSKeyFile, "TLS key file")
	return out
}
