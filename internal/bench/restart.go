package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
)

// RestartOptions configure a footprint and restart run: N messages are queued in a gateway that is not
// delivering, its memory is measured with them queued, then it is closed and a new gateway is started on
// the same data directory, which delivers them all.
type RestartOptions struct {
	Domains  int
	Messages int
	// Submitters is the number of goroutines filling the queue (through queue.Submit, the path intake uses
	// after SMTP, so that 100,000 messages are queued in minutes rather than an hour).
	Submitters int
	BodyBytes  int
	DataDir    string
	Timeout    time.Duration
	Progress   io.Writer
	Logger     *slog.Logger
	// External restarts the gateway in its own process (GatewayCommand, as in Options), so that its memory
	// and CPU are its own; the queue is still filled by this process. CLICommand, when set, is the mxgate
	// command whose `queue summary` and `queue list --domain` are timed against the restarted gateway's
	// admin API while the queue is full.
	External       bool
	GatewayCommand []string
	CLICommand     []string
	// CPUProfile, with External, is the file the restarted gateway process writes a CPU profile of its
	// start to its first delivery to.
	CPUProfile string
	// Reuse skips the filling: DataDir holds the queue of an earlier run, which is restarted as it is.
	Reuse bool
	// DrainFor, when positive, bounds the drain: the delivery rate is measured over this long after the
	// first delivery, and the run ends without waiting for the rest (External only).
	DrainFor time.Duration
}

// RestartResult is what a restart run measured.
type RestartResult struct {
	Messages int `json:"messages"`
	Domains  int `json:"domains"`
	// FillSeconds is how long queuing took; HeapMBQueued and RSSMBQueued are the gateway's Go heap in use
	// and the process's resident memory with every message queued (the process also runs the simulated
	// internet).
	FillSeconds  float64 `json:"fill_seconds"`
	HeapMBQueued float64 `json:"heap_mb_queued"`
	RSSMBQueued  float64 `json:"rss_mb_queued"`
	// OpenSeconds is daemon.New on the full data directory (the queue rebuilds its index);
	// FirstDeliverySeconds is from the start of daemon.New to the first delivered recipient.
	OpenSeconds          float64 `json:"open_seconds"`
	FirstDeliverySeconds float64 `json:"first_delivery_seconds"`
	// DrainSeconds is from the start of daemon.New to the last delivery, and Delivered how many arrived.
	DrainSeconds float64 `json:"drain_seconds"`
	Delivered    int     `json:"delivered"`
	Complete     bool    `json:"complete"`

	// With External: the restarted gateway process's peak RSS (VmHWM) at its first delivery and at the end,
	// the deliveries over the bounded drain (DrainFor) and their rate, its CPU per delivered message over
	// that period, and the wall time of each `queue summary` and `queue list --domain` run (three each, the
	// queue full; ListDomainMessages is how many messages the list printed).
	External              bool      `json:"external"`
	GatewayRSSMBFirst     float64   `json:"gateway_peak_rss_mb_at_first_delivery,omitempty"`
	GatewayPeakRSSMB      float64   `json:"gateway_peak_rss_mb,omitempty"`
	DrainForSeconds       float64   `json:"drain_for_seconds,omitempty"`
	DrainDelivered        int       `json:"drain_delivered,omitempty"`
	DrainPerSec           float64   `json:"drain_msgs_per_sec,omitempty"`
	DrainCPUPerMsgMs      float64   `json:"drain_gateway_cpu_ms_per_msg,omitempty"`
	QueueSummarySeconds   []float64 `json:"queue_summary_seconds,omitempty"`
	QueueListDomainSecond []float64 `json:"queue_list_domain_seconds,omitempty"`
	ListDomainMessages    int       `json:"queue_list_domain_messages,omitempty"`
}

// JSON marshals the result.
func (r RestartResult) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Text prints the result as a table.
func (r RestartResult) Text(w io.Writer) error {
	_, err := fmt.Fprintf(w, `messages queued            %d (to %d enforce domains)
time to queue them         %.1f s
Go heap with them queued   %.1f MB
process RSS with them queued %.1f MB
restart: open              %.2f s
restart: first delivery    %.2f s
restart: all delivered     %.1f s (%d of %d, complete=%v)
`, r.Messages, r.Domains, r.FillSeconds, r.HeapMBQueued, r.RSSMBQueued, r.OpenSeconds, r.FirstDeliverySeconds,
		r.DrainSeconds, r.Delivered, r.Messages, r.Complete)
	if err != nil || !r.External {
		return err
	}
	_, err = fmt.Fprintf(w, `gateway process peak RSS   %.1f MB at the first delivery, %.1f MB at the end
drain over %.0f s           %d delivered = %.0f msgs/s, gateway CPU %.3f ms/msg
queue summary              %v s
queue list --domain        %v s (%d messages)
`, r.GatewayRSSMBFirst, r.GatewayPeakRSSMB, r.DrainForSeconds, r.DrainDelivered, r.DrainPerSec, r.DrainCPUPerMsgMs,
		r.QueueSummarySeconds, r.QueueListDomainSecond, r.ListDomainMessages)
	return err
}

// RunRestart runs the footprint and restart measurement.
func RunRestart(ctx context.Context, o RestartOptions) (RestartResult, error) {
	if o.Domains <= 0 {
		o.Domains = 50
	}
	if o.Messages <= 0 {
		o.Messages = 10000
	}
	if o.Submitters <= 0 {
		o.Submitters = 32
	}
	if o.BodyBytes <= 0 {
		o.BodyBytes = 2048
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := RestartResult{Messages: o.Messages, Domains: o.Domains}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	n, err := simnet.New(simnet.Options{})
	if err != nil {
		return res, err
	}
	defer n.Close()
	var receivers []*simnet.Receiver
	var domains []string
	var rcpts []address.Address
	for i := range o.Domains {
		dom := fmt.Sprintf("d%03d.bench.example", i)
		rcpt, err := address.ParseAddress("r@" + dom)
		if err != nil {
			return res, err
		}
		rcpts = append(rcpts, rcpt)
		r, err := n.AddMX(simnet.MXOptions{Domain: dom, Host: "mx." + dom, Pref: 10})
		if err != nil {
			return res, err
		}
		n.DNS.AddTXT("_mta-sts."+dom, "v=STSv1; id=bench1")
		if _, err := n.ServeMTASTSPolicy(dom, fmt.Sprintf(policyFmt, "mx."+dom)); err != nil {
			return res, err
		}
		receivers, domains = append(receivers, r), append(domains, dom)
	}
	sender, err := address.ParsePath("bench@sender.example")
	if err != nil {
		return res, err
	}
	dir := o.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mxgate-bench-restart-"); err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
	}
	cfg := n.GatewayConfig(dir)

	if o.Reuse {
		// The queue was filled by an earlier run on this data directory (its --data-dir).
		if o.DataDir == "" {
			return res, errors.New("bench: reusing a filled queue needs its data directory")
		}
	} else if err := func() error {
		// Phase 1: fill the queue of a gateway that is not delivering (its scheduler does not run), as a
		// gateway cut off from its destinations holds mail: every message stays due.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		d1, err := daemon.New(ctx, daemon.Options{BootstrapOut: io.Discard, Config: cfg, Logger: log, Roots: n.RootPool(), SMTPListener: ln})
		if err != nil {
			ln.Close()
			return err
		}
		run1 := func() error { ln.Close(); return d1.Close() }
		body := strings.Repeat(fillerLine, max(1, o.BodyBytes/len(fillerLine)))
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, o.Submitters)
		t0 := time.Now()
		for range o.Submitters {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= o.Messages || ctx.Err() != nil {
						return
					}
					dom := domains[i%len(domains)]
					msg := fmt.Sprintf("From: bench@sender.example\r\nTo: r@%s\r\nSubject: restart %d\r\n\r\n%s", dom, i, body)
					env := queue.Envelope{From: sender, Recipients: []queue.Recipient{{Addr: rcpts[i%len(rcpts)]}}}
					if _, err := d1.Queue.Submit(ctx, env, strings.NewReader(msg)); err != nil {
						errc <- err
						return
					}
					if o.Progress != nil && i%1000 == 0 {
						fmt.Fprintf(o.Progress, "\rqueued %d/%d", i, o.Messages)
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			run1()
			return fmt.Errorf("bench: filling the queue: %w", err)
		}
		res.FillSeconds = time.Since(t0).Seconds()
		if o.Progress != nil {
			fmt.Fprintln(o.Progress)
		}
		res.HeapMBQueued = heapMB()
		res.RSSMBQueued = currentRSSMB()
		if err := run1(); err != nil {
			return err
		}
		return nil
	}(); err != nil {
		return res, err
	}

	if o.External {
		return restartExternal(ctx, o, cfg, n, domains, res)
	}

	// Phase 2: a new gateway on the same data directory, delivering.
	var delivered atomic.Int64
	first := make(chan struct{})
	var once sync.Once
	t1 := time.Now()
	_, run2, err := startDaemon(ctx, cfg, n, log, func(ev delivery.Event) {
		if ev.Result.Outcome == queue.Delivered {
			delivered.Add(1)
			once.Do(func() { close(first) })
		}
	})
	if err != nil {
		return res, err
	}
	res.OpenSeconds = time.Since(t1).Seconds()
	select {
	case <-first:
		res.FirstDeliverySeconds = time.Since(t1).Seconds()
	case <-ctx.Done():
	}
	for i, r := range receivers {
		want := o.Messages / len(receivers)
		if i < o.Messages%len(receivers) {
			want++
		}
		if err := r.WaitMessages(ctx, want); err != nil {
			break
		}
	}
	res.DrainSeconds = time.Since(t1).Seconds()
	for _, r := range receivers {
		res.Delivered += len(r.Messages())
	}
	res.Complete = res.Delivered >= o.Messages
	return res, run2()
}

// startDaemon starts a gateway and returns a function that stops it and reports Run's error.
func startDaemon(ctx context.Context, cfg *config.Config, n *simnet.Net, log *slog.Logger, onDelivery func(delivery.Event)) (*daemon.Daemon, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	d, err := daemon.New(ctx, daemon.Options{BootstrapOut: io.Discard, Config: cfg, Logger: log, Roots: n.RootPool(), SMTPListener: ln, OnDelivery: onDelivery})
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	return d, func() error { stop(); return <-done }, nil
}

// restartExternal is phase 2 of RunRestart with the gateway in its own process.
func restartExternal(ctx context.Context, o RestartOptions, cfg *config.Config, n *simnet.Net, domains []string,
	res RestartResult) (RestartResult, error) {
	res.External = true
	t1 := time.Now()
	spec := gatewaySpec{Config: cfg, RootsPEM: n.TrustedCA.PEM(), Verbose: o.Logger != nil}
	if o.CPUProfile != "" {
		var err error
		if spec.CPUProfile, err = filepath.Abs(o.CPUProfile); err != nil {
			return res, err
		}
	}
	gw, err := startExternal(ctx, o.GatewayCommand, spec)
	if err != nil {
		return res, err
	}
	defer gw.close()
	res.OpenSeconds = time.Since(t1).Seconds()
	first, err := gw.waitDelivered(ctx, 1)
	if err != nil {
		return res, fmt.Errorf("bench: waiting for the first delivery: %w", err)
	}
	res.FirstDeliverySeconds = time.Since(t1).Seconds()
	res.GatewayRSSMBFirst = first.PeakRSSMB
	if len(o.CLICommand) > 0 {
		tok, err := admin.ReadToken(admin.TokenPath(cfg.Data.Dir))
		if err != nil {
			return res, err
		}
		base := []string{"--admin", "http://" + gw.adminAddr, "--token", tok}
		for range 3 {
			secs, _, err := timeCommand(ctx, o.CLICommand, append(base, "queue", "summary")...)
			if err != nil {
				return res, err
			}
			res.QueueSummarySeconds = append(res.QueueSummarySeconds, secs)
			secs, out, err := timeCommand(ctx, o.CLICommand, append(base, "--json", "queue", "list", "--domain", domains[0])...)
			if err != nil {
				return res, err
			}
			res.QueueListDomainSecond = append(res.QueueListDomainSecond, secs)
			var msgs []json.RawMessage
			if err := json.Unmarshal(out, &msgs); err == nil {
				res.ListDomainMessages = len(msgs)
			}
		}
	}
	s0, err := gw.stats(ctx)
	if err != nil {
		return res, err
	}
	t2 := time.Now()
	var end gatewayStats
	if o.DrainFor > 0 {
		select {
		case <-time.After(o.DrainFor):
		case <-ctx.Done():
		}
		end, err = gw.stats(ctx)
	} else {
		end, err = gw.waitDelivered(ctx, o.Messages)
	}
	if err != nil {
		return res, err
	}
	el := time.Since(t2).Seconds()
	res.DrainSeconds = time.Since(t1).Seconds()
	res.DrainForSeconds = el
	res.DrainDelivered = end.Delivered - s0.Delivered
	res.DrainPerSec = float64(res.DrainDelivered) / el
	if res.DrainDelivered > 0 {
		res.DrainCPUPerMsgMs = 1000 * (end.UserSeconds + end.SysSeconds - s0.UserSeconds - s0.SysSeconds) / float64(res.DrainDelivered)
	}
	res.GatewayPeakRSSMB = end.PeakRSSMB
	res.Delivered = end.Delivered
	res.Complete = res.Delivered >= o.Messages
	return res, nil
}

// timeCommand runs command with args, its output kept, and returns its wall time.
func timeCommand(ctx context.Context, command []string, args ...string) (float64, []byte, error) {
	cmd := exec.CommandContext(ctx, command[0], append(slices.Clone(command[1:]), args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	t := time.Now()
	err := cmd.Run()
	secs := math.Round(time.Since(t).Seconds()*1000) / 1000
	if err != nil {
		return secs, nil, fmt.Errorf("bench: %v: %w", args, err)
	}
	return secs, out.Bytes(), nil
}
