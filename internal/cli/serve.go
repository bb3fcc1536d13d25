package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

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
			level := new(slog.LevelVar)
			level.Set(cfg.Log.SlogLevel())
			log := newLogger(cfg, g, level)
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
			// SIGHUP reloads (systemctl reload, logrotate); without this it would end the process.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			notifier := sdnotify.Notifier{Addr: g.env.getenv(sdnotify.Socket)}
			d, err := daemon.New(cmd.Context(), daemon.Options{Config: cfg, Logger: log, LogLevel: level, Notify: notifier.Notify})
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			go reloadOnHUP(ctx, hup, cfgPath, d, log)
			return d.Run(ctx)
		},
	}
}

// reloadOnHUP reloads the configuration file at every SIGHUP and logs what changed, what needs a restart
// and what failed to load. A file that does not load changes nothing.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, d *daemon.Daemon, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := config.Load(path)
		if err != nil {
			log.Error("reload: configuration not loaded, nothing changed", "file", path, "err", err)
			continue
		}
		r := d.Reload(cfg)
		for _, s := range r.Reloaded {
			log.Info("reload: "+s, "file", path)
		}
		for _, s := range r.Failed {
			log.Error("reload: "+s, "file", path)
		}
		if len(r.NeedRestart) > 0 {
			log.Warn("reload: changed keys need a restart: "+strings.Join(r.NeedRestart, ", "), "file", path, "keys", r.NeedRestart)
		}
		if len(r.Reloaded)+len(r.Failed)+len(r.NeedRestart) == 0 {
			log.Info("reload: nothing changed", "file", path)
		}
	}
}

func newLogger(cfg *config.Config, g *globals, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(g.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(g.stderr, opts))
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
