package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/bench"
)

// benchCmd is `mxgate bench`: the load tool of package bench.
func benchCmd(g *globals) *cobra.Command {
	var (
		o        bench.Options
		verbose  bool
		noBar    bool
		restart  bool
		drainFor time.Duration
		reuse    bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput against a simulated internet (MTA-STS enforce domains on loopback)",
		Long: "bench starts a simulated internet with --domains recipient domains (MTA-STS enforce, valid\n" +
			"certificates, STARTTLS) and a gateway with a durable spool in a temporary directory, injects\n" +
			"--messages messages from --clients concurrent SMTP sessions, waits until every message has arrived,\n" +
			"and prints throughput, latencies, CPU, peak RSS, fsyncs and TLS handshakes per message.\n" +
			"Everything shares this machine's CPUs; run it several times and compare medians.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !noBar && isTerminal(g.stderr) {
				o.Progress = g.stderr
			}
			if verbose {
				o.Logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			if o.External {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("bench --external: finding this program to start the gateway: %w", err)
				}
				o.GatewayCommand = []string{exe, "bench", "gateway-process"}
			}
			if restart {
				return runRestartBench(cmd, g, o, drainFor, reuse)
			}
			res, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				data, err := res.JSON()
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, string(data))
			} else if err := res.Text(g.stdout); err != nil {
				return err
			}
			if !res.Complete || !res.AllVerified {
				fmt.Fprintln(g.stderr, "mxgate bench: run incomplete or not every delivery over verified TLS")
				return exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Domains, "domains", bench.DefaultDomains, "recipient domains, each with an MTA-STS enforce policy and one MX")
	f.IntVar(&o.Messages, "messages", bench.DefaultMessages, "messages to inject")
	f.IntVar(&o.Clients, "clients", bench.DefaultClients, "concurrent SMTP client sessions")
	f.IntVar(&o.RcptsPerMessage, "rcpts", bench.DefaultRcpts, "recipients per message (in different domains)")
	f.IntVar(&o.BodyBytes, "body-bytes", bench.DefaultBodyBytes, "approximate message size")
	f.DurationVar(&o.Timeout, "timeout", bench.DefaultTimeout, "bound on the whole run")
	f.StringVar(&o.DataDir, "data-dir", "", "gateway data directory (default: a temporary directory, removed)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the run to this file (with --external, of the gateway process alone)")
	f.BoolVar(&noBar, "no-progress", false, "do not draw the progress bar")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the gateway's logs")
	f.BoolVar(&o.External, "external", false, "run the gateway in its own process and report its CPU and memory apart from the load side (clients, DNS, policy hosts, receivers)")
	f.IntVar(&o.Nodes, "nodes", 1, "gateways to run in this process, as the nodes of a cluster on --database (clients spread over them)")
	f.StringVar(&o.Database, "database", "", "PostgreSQL database the nodes share (postgres://...); each run should have a fresh one")
	f.StringVar(&o.SpoolSync, "spool-sync", "", "the gateway's queue.spool_sync: group or file (default: the configuration default)")
	f.BoolVar(&restart, "restart", false, "instead: queue --messages messages with every destination down, measure memory, then restart on the same data and time the first delivery and the drain")
	f.BoolVar(&reuse, "reuse", false, "with --restart: do not fill; restart on the queue an earlier --restart left in --data-dir")
	f.DurationVar(&drainFor, "drain-for", 0, "with --restart --external: measure the drain over this long after the first delivery instead of waiting for every message")
	cmd.AddCommand(benchGatewayCmd(g))
	return cmd
}

// benchGatewayCmd is the gateway process of `mxgate bench --external`, which starts it and talks to it
// over its standard input and output.
func benchGatewayCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "gateway-process",
		Short:  "The gateway side of bench --external (started by it; not for interactive use)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			return bench.ServeGateway(cmd.Context(), g.stdin, g.stdout, log)
		},
	}
}

func runRestartBench(cmd *cobra.Command, g *globals, o bench.Options, drainFor time.Duration, reuse bool) error {
	ro := bench.RestartOptions{
		Domains: o.Domains, Messages: o.Messages, BodyBytes: o.BodyBytes, DataDir: o.DataDir,
		Timeout: o.Timeout, Progress: o.Progress, Logger: o.Logger,
		External: o.External, GatewayCommand: o.GatewayCommand, DrainFor: drainFor, Reuse: reuse, CPUProfile: o.CPUProfile,
	}
	if o.External {
		ro.CLICommand = o.GatewayCommand[:1]
	} else if drainFor > 0 {
		return fmt.Errorf("bench --drain-for needs --external")
	}
	res, err := bench.RunRestart(cmd.Context(), ro)
	if err != nil {
		return err
	}
	if g.json {
		data, err := res.JSON()
		if err != nil {
			return err
		}
		fmt.Fprintln(g.stdout, string(data))
	} else if err := res.Text(g.stdout); err != nil {
		return err
	}
	if !res.Complete && drainFor == 0 {
		fmt.Fprintln(g.stderr, "mxgate bench --restart: not every queued message was delivered")
		return exitError{code: 1}
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal), so that the progress bar is not
// written into files and pipes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
