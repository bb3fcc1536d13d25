// Package bench implements mxgate's load tool (`mxgate bench`): it starts a simulated internet (package
// simnet) with a number of recipient domains that publish an MTA-STS enforce policy and run one MX with a
// valid certificate, starts a gateway through daemon.New exactly as the demo does (real durable spool,
// every 250 only after fsync), injects messages from concurrent SMTP clients that reuse their sessions,
// waits until the receivers hold every message, and reports throughput, latencies and footprint.
//
// Everything runs on loopback. By default it all runs in this process, so the gateway, the clients and the
// simulated receivers share the CPUs and the figures are those of the whole system. With Options.External
// the gateway runs in a child process (ServeGateway) and its CPU and memory are measured alone, as it is
// deployed, beside those of the load side. It deliberately does not measure retries, bounces or TLS
// reporting.
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/simnet"
)

// Defaults of Options. With them a run finishes in well under a minute on two cores.
const (
	DefaultDomains   = 50
	DefaultMessages  = 5000
	DefaultClients   = 8
	DefaultRcpts     = 1
	DefaultBodyBytes = 2048
	DefaultTimeout   = 5 * time.Minute
)

// Options control a load run. Zero fields take the defaults above.
type Options struct {
	// Domains is the number of recipient domains (D), each with an MTA-STS enforce policy and one MX.
	Domains int
	// Messages is the number of messages injected (N).
	Messages int
	// Clients is the number of concurrent SMTP clients (C); each keeps one session open for all its
	// messages (MAIL/RCPT/DATA, then RSET, in a loop).
	Clients int
	// RcptsPerMessage is the number of recipients of each message, each in a different domain when
	// Domains allows it.
	RcptsPerMessage int
	// BodyBytes is the approximate size of each message.
	BodyBytes int
	// Timeout bounds the whole run (injection and delivery).
	Timeout time.Duration
	// Progress receives a one-line progress bar, redrawn in place; nil prints nothing.
	Progress io.Writer
	// DataDir holds the gateway's data; "" means a temporary directory, removed at the end. It should be on
	// the disk being measured: fsync on tmpfs costs nothing.
	DataDir string
	// CPUProfile, when set, is the file a CPU profile of the run (injection to last receipt) is written to.
	// With External it is the gateway process's profile (its start to the last delivery), not the load
	// side's.
	CPUProfile string
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// External runs the gateway in its own process, started with GatewayCommand (which must run
	// ServeGateway, as `mxgate bench gateway-process` does), so that its CPU and memory are measured apart
	// from the clients, DNS, policy hosts and receivers, as the gateway runs when deployed.
	External       bool
	GatewayCommand []string
	// Nodes is the number of gateways (cluster nodes) run in this process, each with its own data directory
	// and spool, all on the PostgreSQL database Database; the clients are spread over them (client c submits
	// to node c mod Nodes). 0 or 1 with Database empty is the single node on SQLite.
	Nodes int
	// Database is the PostgreSQL database the nodes share ([data] database); needed when Nodes > 1.
	Database string
	// SpoolSync, when set, is the gateway's queue.spool_sync ("auto", "group" or "file"); "" keeps the
	// default.
	SpoolSync string
}

// Latency is a distribution summary in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Result is what a run measured. It marshals to JSON.
type Result struct {
	Domains         int `json:"domains"`
	Messages        int `json:"messages"`
	Clients         int `json:"clients"`
	RcptsPerMessage int `json:"rcpts_per_message"`
	BodyBytes       int `json:"body_bytes"`
	CPUs            int `json:"cpus"`
	// Nodes is the number of gateways (cluster nodes on one PostgreSQL database when more than one).
	Nodes int `json:"nodes"`

	// Received counts the messages the receivers accepted (one per recipient domain of each message);
	// Expected is what they should have accepted; Duplicates counts tokens received more than once.
	Received   int  `json:"received"`
	Expected   int  `json:"expected"`
	Duplicates int  `json:"duplicates"`
	Complete   bool `json:"complete"`

	// Seconds is end to end: first submit to last receipt. InjectSeconds is first submit to last 250.
	Seconds       float64 `json:"seconds"`
	InjectSeconds float64 `json:"inject_seconds"`
	MsgsPerSec    float64 `json:"msgs_per_sec"`
	AcceptPerSec  float64 `json:"accept_per_sec"`
	// Accept is MAIL FROM to the 250 after DATA; EndToEnd is the start of MAIL FROM to the receiver's
	// ReceivedAt.
	Accept   Latency `json:"accept_latency"`
	EndToEnd Latency `json:"end_to_end_latency"`

	// CPUSeconds is user+system time of the whole system (gateway, clients and simulated receivers) over
	// the run; CPUPerMsgMs the same per message. PeakRSSMB is this process's.
	CPUSeconds     float64 `json:"cpu_seconds"`
	CPUUserSeconds float64 `json:"cpu_user_seconds"`
	CPUSysSeconds  float64 `json:"cpu_sys_seconds"`
	CPUPerMsgMs    float64 `json:"cpu_ms_per_msg"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`

	// With External, the gateway ran in its own process: its CPU over the same window (GatewayCPU*), its
	// peak RSS, and the CPU of this process (the load side: clients, DNS, policy hosts and receivers).
	External              bool    `json:"external"`
	GatewayCPUSeconds     float64 `json:"gateway_cpu_seconds,omitempty"`
	GatewayCPUUserSeconds float64 `json:"gateway_cpu_user_seconds,omitempty"`
	GatewayCPUSysSeconds  float64 `json:"gateway_cpu_sys_seconds,omitempty"`
	GatewayCPUPerMsgMs    float64 `json:"gateway_cpu_ms_per_msg,omitempty"`
	GatewayPeakRSSMB      float64 `json:"gateway_peak_rss_mb,omitempty"`
	LoadCPUSeconds        float64 `json:"load_cpu_seconds,omitempty"`

	// IndexCommits is the number of queue index transactions for Submits (group commit); CommitsPerMsg the
	// same per message. FsyncsPerMsg is the fsyncs on the submit path per message (SQLite WAL,
	// synchronous=FULL: one fsync per commit), which depends on SpoolSync.
	IndexCommits  int64   `json:"index_commits"`
	CommitsPerMsg float64 `json:"index_commits_per_msg"`
	FsyncsPerMsg  float64 `json:"submit_fsyncs_per_msg"`
	// SpoolSync is the gateway's queue.spool_sync: "group" (one syncfs per group covers the bodies: the
	// submit fsyncs are 2 per group) or "file" (an fsync per body, then per group the directory and the
	// commit).
	SpoolSync string `json:"spool_sync"`
	DataDirFS string `json:"data_dir_fs"`
	// DNSQueries counts the queries the simulated internet's DNS server received during the run (the
	// gateway's, MX, A/AAAA, _mta-sts TXT and the policy hosts' addresses); DNSQueriesPerMsg per message.
	DNSQueries       int     `json:"dns_queries"`
	DNSQueriesPerMsg float64 `json:"dns_queries_per_msg"`
	DeliveryEvents   int     `json:"delivery_events"`

	// Connections counts TCP connections the receivers accepted; every one does STARTTLS, so it is the
	// number of TLS handshakes. SessionsOffered counts handshakes where the gateway offered a cached TLS
	// session (resumption attempted); SessionsStored the session tickets it stored.
	Connections      int     `json:"connections"`
	HandshakesPerMsg float64 `json:"handshakes_per_msg"`
	MsgsPerSession   float64 `json:"msgs_per_session"`
	SessionsOffered  int64   `json:"tls_sessions_offered"`
	SessionsStored   int64   `json:"tls_sessions_stored"`

	// Delivered, Deferred and Failed count recipient outcomes seen through OnDelivery; Verified counts the
	// delivered ones over verified TLS ("verified TLS1.3"); AllVerified is true when every delivery was.
	Delivered   int      `json:"delivered"`
	Deferred    int      `json:"deferred"`
	Failed      int      `json:"failed"`
	Verified    int      `json:"verified_tls"`
	AllVerified bool     `json:"all_verified_tls"`
	TLSSeen     []string `json:"tls_seen"`

	Errors []string `json:"errors,omitempty"`
}

// JSON returns r as indented JSON.
func (r Result) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Text prints r as a table.
func (r Result) Text(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("workload", "%d messages × %d rcpt, %d B, %d domains (MTA-STS enforce), %d clients, %d CPUs",
		r.Messages, r.RcptsPerMessage, r.BodyBytes, r.Domains, r.Clients, r.CPUs)
	if r.Nodes > 1 {
		row("nodes", "%d gateways in this process on one PostgreSQL database, sharing its CPUs; clients spread over them", r.Nodes)
	}
	row("received", "%d of %d (duplicates %d)", r.Received, r.Expected, r.Duplicates)
	row("throughput", "%.0f msgs/s end to end (%.2f s); intake %.0f msgs/s (%.2f s)", r.MsgsPerSec, r.Seconds, r.AcceptPerSec, r.InjectSeconds)
	row("accept latency", "p50 %.2f ms, p99 %.2f ms, max %.2f ms", r.Accept.P50, r.Accept.P99, r.Accept.Max)
	row("end-to-end latency", "p50 %.1f ms, p99 %.1f ms, max %.1f ms", r.EndToEnd.P50, r.EndToEnd.P99, r.EndToEnd.Max)
	if r.External {
		row("CPU, gateway process", "%.2f s (user %.2f, sys %.2f), %.3f ms/msg", r.GatewayCPUSeconds, r.GatewayCPUUserSeconds, r.GatewayCPUSysSeconds, r.GatewayCPUPerMsgMs)
		row("CPU, whole system", "%.2f s, %.3f ms/msg (load side: clients, DNS, policy hosts, receivers %.2f s)", r.CPUSeconds, r.CPUPerMsgMs, r.LoadCPUSeconds)
		row("peak RSS", "gateway process %.1f MB, load process %.1f MB (VmHWM)", r.GatewayPeakRSSMB, r.PeakRSSMB)
	} else {
		row("CPU", "%.2f s (user %.2f, sys %.2f), %.3f ms/msg, whole process", r.CPUSeconds, r.CPUUserSeconds, r.CPUSysSeconds, r.CPUPerMsgMs)
		row("peak RSS", "%.1f MB (VmHWM, whole process)", r.PeakRSSMB)
	}
	row("durability", "%d index commits = %.3f/msg; submit fsyncs ≈ %.2f/msg (spool_sync %s) on %s", r.IndexCommits, r.CommitsPerMsg, r.FsyncsPerMsg, r.SpoolSync, r.DataDirFS)
	row("DNS", "%d queries = %.3f/msg", r.DNSQueries, r.DNSQueriesPerMsg)
	row("TLS", "%d handshakes = %.3f/msg (%.1f msgs/session); resumption offered %d, tickets stored %d", r.Connections, r.HandshakesPerMsg, r.MsgsPerSession, r.SessionsOffered, r.SessionsStored)
	row("outcomes", "delivered %d (verified TLS %d), deferred %d, failed %d; all verified: %v %v", r.Delivered, r.Verified, r.Deferred, r.Failed, r.AllVerified, r.TLSSeen)
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	return tw.Flush()
}

func (o *Options) defaults() {
	if o.Domains <= 0 {
		o.Domains = DefaultDomains
	}
	if o.Messages <= 0 {
		o.Messages = DefaultMessages
	}
	if o.Clients <= 0 {
		o.Clients = DefaultClients
	}
	if o.RcptsPerMessage <= 0 {
		o.RcptsPerMessage = DefaultRcpts
	}
	if o.BodyBytes <= 0 {
		o.BodyBytes = DefaultBodyBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Nodes <= 0 {
		o.Nodes = 1
	}
}

const fillerLine = "The quick brown fox jumps over the lazy dog 0123456789.\r\n"

const policyFmt = "version: STSv1\nmode: enforce\nmx: %s\nmax_age: 604800\n"

// msgState is what the clients recorded of one message.
type msgState struct {
	start  time.Time
	accept time.Duration
	ok     bool
}

// Run performs one load run. It returns an error when the run could not be set up; a run that did not
// complete (timeout, refused messages) returns its partial Result with Complete false and the reasons in
// Result.Errors.
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	res := Result{Domains: o.Domains, Messages: o.Messages, Clients: o.Clients, RcptsPerMessage: o.RcptsPerMessage,
		BodyBytes: o.BodyBytes, CPUs: runtime.NumCPU()}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	n, err := simnet.New(simnet.Options{})
	if err != nil {
		return res, fmt.Errorf("bench: simulated internet: %w", err)
	}
	defer n.Close()
	domains := make([]string, o.Domains)
	receivers := make([]*simnet.Receiver, o.Domains)
	for i := range domains {
		dom := fmt.Sprintf("d%03d.bench.example", i)
		domains[i] = dom
		r, err := n.AddMX(simnet.MXOptions{Domain: dom, Host: "mx." + dom, Pref: 10})
		if err != nil {
			return res, fmt.Errorf("bench: MX for %s: %w", dom, err)
		}
		receivers[i] = r
		n.DNS.AddTXT("_mta-sts."+dom, "v=STSv1; id=bench1")
		if _, err := n.ServeMTASTSPolicy(dom, fmt.Sprintf(policyFmt, "mx."+dom)); err != nil {
			return res, fmt.Errorf("bench: policy for %s: %w", dom, err)
		}
	}

	dir := o.DataDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "mxgate-bench-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
	}
	res.DataDirFS = fsType(dir)

	cfg := n.GatewayConfig(dir)
	cfg.DNS.Cache = true // as deployed
	if o.SpoolSync != "" {
		cfg.Queue.SpoolSync = o.SpoolSync
	}
	cfg.SMTP.MaxConnsPerIP = max(cfg.SMTP.MaxConnsPerIP, o.Clients+1)

	var gw gateway
	if o.Nodes > 1 && o.Database == "" {
		return res, errors.New("bench: several nodes need a PostgreSQL database to share (--database)")
	}
	if o.Nodes > 1 && o.External {
		return res, errors.New("bench: several nodes run in this process; --external measures one node")
	}
	res.Nodes = o.Nodes
	switch {
	case o.Database != "":
		gw, err = startCluster(ctx, clusterSpec{base: cfg, dir: dir, nodes: o.Nodes, database: o.Database, net: n, log: log})
	case o.External:
		pem := n.TrustedCA.PEM()
		spec := gatewaySpec{Config: cfg, RootsPEM: pem, Verbose: o.Logger != nil}
		if o.CPUProfile != "" {
			if spec.CPUProfile, err = filepath.Abs(o.CPUProfile); err != nil {
				return res, fmt.Errorf("bench: cpu profile: %w", err)
			}
		}
		gw, err = startExternal(ctx, o.GatewayCommand, spec)
	default:
		gw, err = startLocal(ctx, cfg, n.RootPool(), log)
	}
	if err != nil {
		return res, err
	}
	defer func() {
		if err := gw.close(); err != nil {
			log.Warn("bench: gateway stopped with an error", "err", err)
		}
	}()

	expected := make([]int, o.Domains)
	rcptsOf := func(i int) []int {
		k := min(o.RcptsPerMessage, o.Domains)
		out := make([]int, 0, o.RcptsPerMessage)
		for j := range o.RcptsPerMessage {
			out = append(out, (i+j%k)%o.Domains)
		}
		return out
	}
	for i := range o.Messages {
		seen := map[int]bool{}
		for _, di := range rcptsOf(i) {
			if !seen[di] {
				seen[di] = true
				expected[di]++
				res.Expected++
			}
		}
	}

	if o.CPUProfile != "" && !o.External {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return res, fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	msgs := make([]msgState, o.Messages)
	var submitted atomic.Int64
	var errMu sync.Mutex
	addErr := func(err error) {
		errMu.Lock()
		if len(res.Errors) < 20 {
			res.Errors = append(res.Errors, err.Error())
		}
		errMu.Unlock()
	}

	dnsStart := len(n.DNS.Queries())
	gwStart, err := gw.stats(ctx)
	if err != nil {
		return res, err
	}
	ruStart := rusage()
	t0 := time.Now()
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go progress(o.Progress, progressDone, progressStopped, o.Messages, &submitted)

	var wg sync.WaitGroup
	for c := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := client(ctx, clientJob{
				addr: addrFor(gw, c), first: c, step: o.Clients, n: o.Messages,
				domains: domains, rcptsOf: rcptsOf, bodyBytes: o.BodyBytes,
				msgs: msgs, submitted: &submitted,
			}); err != nil {
				addErr(fmt.Errorf("client %d: %w", c, err))
			}
		}()
	}
	wg.Wait()
	tInjected := time.Now()

	var waitErr error
	for i, r := range receivers {
		if err := r.WaitMessages(ctx, expected[i]); err != nil {
			waitErr = err
			break
		}
	}
	var gwEnd gatewayStats
	if waitErr == nil {
		// The receiver's 250 can precede the gateway's OnDelivery event by a moment.
		want := o.Messages * o.RcptsPerMessage
		gwEnd, err = gw.waitDelivered(ctx, want)
		if err != nil {
			waitErr = fmt.Errorf("%d of %d delivery events: %w", gwEnd.Delivered, want, err)
		}
	} else {
		gwEnd, _ = gw.stats(ctx)
	}
	tWaited := time.Now()
	ruEnd := rusage()
	res.DNSQueries = len(n.DNS.Queries()) - dnsStart
	res.DNSQueriesPerMsg = float64(res.DNSQueries) / float64(o.Messages)
	if o.CPUProfile != "" && !o.External {
		pprof.StopCPUProfile()
	}
	close(progressDone)
	<-progressStopped
	if waitErr != nil {
		addErr(fmt.Errorf("waiting for the receivers: %w", waitErr))
	}

	// Match receipts to submissions by the token header.
	var last time.Time
	counts := make([]int, o.Messages)
	var e2e []time.Duration
	for _, r := range receivers {
		res.Connections += r.Connections()
		for _, m := range r.Messages() {
			i, ok := token(m.Data)
			if !ok || i < 0 || i >= o.Messages {
				continue
			}
			res.Received++
			counts[i]++
			if counts[i] > min(o.RcptsPerMessage, o.Domains) {
				res.Duplicates++
			}
			if m.ReceivedAt.After(last) {
				last = m.ReceivedAt
			}
			if ms := msgs[i]; ms.ok {
				e2e = append(e2e, m.ReceivedAt.Sub(ms.start))
			}
		}
	}
	if last.IsZero() {
		last = tWaited
	}
	var accepts []time.Duration
	for _, m := range msgs {
		if m.ok {
			accepts = append(accepts, m.accept)
		}
	}
	res.Complete = waitErr == nil && res.Received >= res.Expected && len(accepts) == o.Messages
	res.Seconds = last.Sub(t0).Seconds()
	res.InjectSeconds = tInjected.Sub(t0).Seconds()
	res.MsgsPerSec = float64(len(accepts)) / res.Seconds
	res.AcceptPerSec = float64(len(accepts)) / res.InjectSeconds
	res.Accept = summarize(accepts)
	res.EndToEnd = summarize(e2e)
	res.CPUUserSeconds = ruEnd.user - ruStart.user
	res.CPUSysSeconds = ruEnd.sys - ruStart.sys
	res.PeakRSSMB = peakRSSMB()
	if o.External {
		// This process ran the load side; the gateway's own CPU is measured in its process over the same
		// window, and the whole system is the sum.
		res.External = true
		res.LoadCPUSeconds = res.CPUUserSeconds + res.CPUSysSeconds
		res.GatewayCPUUserSeconds = gwEnd.UserSeconds - gwStart.UserSeconds
		res.GatewayCPUSysSeconds = gwEnd.SysSeconds - gwStart.SysSeconds
		res.GatewayCPUSeconds = res.GatewayCPUUserSeconds + res.GatewayCPUSysSeconds
		res.GatewayCPUPerMsgMs = 1000 * res.GatewayCPUSeconds / float64(o.Messages)
		res.GatewayPeakRSSMB = gwEnd.PeakRSSMB
		res.CPUUserSeconds += res.GatewayCPUUserSeconds
		res.CPUSysSeconds += res.GatewayCPUSysSeconds
	}
	res.CPUSeconds = res.CPUUserSeconds + res.CPUSysSeconds
	res.CPUPerMsgMs = 1000 * res.CPUSeconds / float64(o.Messages)
	res.IndexCommits = gwEnd.Commits
	res.CommitsPerMsg = float64(res.IndexCommits) / float64(o.Messages)
	res.SpoolSync, _ = daemon.ResolveSpoolSync(cfg.Queue.SpoolSync)
	if res.SpoolSync == config.SpoolSyncGroup {
		// Per group: one syncfs (bodies, renames) and one index commit.
		res.FsyncsPerMsg = 2 * res.CommitsPerMsg
	} else {
		// The body file, then per group one spool-directory fsync and one index commit.
		res.FsyncsPerMsg = 1 + 2*res.CommitsPerMsg
	}
	res.HandshakesPerMsg = float64(res.Connections) / float64(o.Messages)
	if res.Connections > 0 {
		res.MsgsPerSession = float64(res.Received) / float64(res.Connections)
	}
	res.SessionsOffered = gwEnd.SessionsOffered
	res.SessionsStored = gwEnd.SessionsStored
	gwEnd.fill(&res)
	res.AllVerified = res.AllVerified && res.Verified >= o.Messages*o.RcptsPerMessage
	return res, nil
}

// clientJob is one SMTP client's share: messages first, first+step, ...
type clientJob struct {
	addr        string
	first, step int
	n           int
	domains     []string
	rcptsOf     func(int) []int
	bodyBytes   int
	msgs        []msgState
	submitted   *atomic.Int64
}

// client submits its messages over one SMTP session (reconnecting only after an error).
func client(ctx context.Context, j clientJob) error {
	var c *smtp.Client
	defer func() {
		if c != nil {
			c.Quit()
		}
	}()
	var buf bytes.Buffer
	for i := j.first; i < j.n; i += j.step {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c == nil {
			var err error
			c, err = smtp.Dial(j.addr)
			if err != nil {
				return err
			}
			if err := c.Hello("client.bench.example"); err != nil {
				return err
			}
		}
		buf.Reset()
		fmt.Fprintf(&buf, "X-Bench-Token: %d\r\nFrom: load@sender.example\r\nTo: rcpt%d@%s\r\nSubject: bench %d\r\n"+
			"Message-ID: <bench.%d@sender.example>\r\nDate: %s\r\n\r\n",
			i, i, j.domains[j.rcptsOf(i)[0]], i, i, time.Now().UTC().Format(time.RFC1123Z))
		for buf.Len() < j.bodyBytes {
			buf.WriteString(fillerLine)
		}
		start := time.Now()
		err := send(c, i, j, buf.Bytes())
		if err != nil {
			// A refused message is not retried: the run is then incomplete and says why.
			c.Close()
			c = nil
			return fmt.Errorf("message %d: %w", i, err)
		}
		j.msgs[i] = msgState{start: start, accept: time.Since(start), ok: true}
		j.submitted.Add(1)
	}
	return nil
}

func send(c *smtp.Client, i int, j clientJob, body []byte) error {
	if err := c.Mail("load@sender.example", nil); err != nil {
		return err
	}
	for k, di := range j.rcptsOf(i) {
		if err := c.Rcpt(fmt.Sprintf("rcpt%d.%d@%s", i, k, j.domains[di]), nil); err != nil {
			c.Reset()
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		c.Reset()
		return err
	}
	if _, err := w.Write(body); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// token extracts the X-Bench-Token header value at the start of data.
func token(data []byte) (int, bool) {
	const h = "X-Bench-Token: "
	k := bytes.Index(data, []byte(h))
	if k < 0 {
		return 0, false
	}
	rest := data[k+len(h):]
	e := bytes.IndexByte(rest, '\r')
	if e < 0 {
		return 0, false
	}
	i, err := strconv.Atoi(string(rest[:e]))
	return i, err == nil
}

// events tallies delivery outcomes seen through OnDelivery.
type events struct {
	mu        sync.Mutex
	total     int
	delivered int
	deferred  int
	failed    int
	verified  int
	tls       map[string]int
	// changed is closed (and then dropped) on every event; wait makes a new one.
	changed chan struct{}
}

func (e *events) add(ev delivery.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.total++
	switch ev.Result.Outcome {
	case "delivered":
		e.delivered++
		if strings.HasPrefix(ev.Result.TLS, "verified") {
			e.verified++
		}
	case "deferred":
		e.deferred++
	case "failed":
		e.failed++
	}
	if e.tls == nil {
		e.tls = map[string]int{}
	}
	e.tls[ev.Result.TLS]++
	if e.changed != nil {
		close(e.changed)
		e.changed = nil
	}
}

// wait blocks until n recipients were delivered or ctx is done.
func (e *events) wait(ctx context.Context, n int) error {
	for {
		e.mu.Lock()
		if e.delivered >= n {
			e.mu.Unlock()
			return nil
		}
		if e.changed == nil {
			e.changed = make(chan struct{})
		}
		ch := e.changed
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// snapshot copies the tallies into s.
func (e *events) snapshot(s *gatewayStats) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s.Total, s.Delivered, s.Deferred, s.Failed, s.Verified = e.total, e.delivered, e.deferred, e.failed, e.verified
	s.TLS = make(map[string]int, len(e.tls))
	for k, v := range e.tls {
		s.TLS[k] = v
	}
}

func (s gatewayStats) fill(r *Result) {
	r.DeliveryEvents = s.Total
	r.Delivered, r.Deferred, r.Failed, r.Verified = s.Delivered, s.Deferred, s.Failed, s.Verified
	r.AllVerified = s.Delivered > 0 && s.Verified == s.Delivered && s.Deferred == 0 && s.Failed == 0
	for k, v := range s.TLS {
		r.TLSSeen = append(r.TLSSeen, fmt.Sprintf("%s×%d", k, v))
	}
	slices.Sort(r.TLSSeen)
}

// countingCache wraps the gateway's TLS client session cache to count resumption offers.
type countingCache struct {
	inner      tls.ClientSessionCache
	hits, puts atomic.Int64
}

func (c *countingCache) Get(key string) (*tls.ClientSessionState, bool) {
	s, ok := c.inner.Get(key)
	if ok {
		c.hits.Add(1)
	}
	return s, ok
}

func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
	c.inner.Put(key, cs)
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return ms(ds[max(0, min(i, len(ds)-1))])
	}
	return Latency{P50: q(0.50), P99: q(0.99), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

type cpuTimes struct{ user, sys float64 }

func rusage() cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return cpuTimes{user: tv(ru.Utime), sys: tv(ru.Stime)}
}

// peakRSSMB reads VmHWM from /proc/self/status; 0 when unavailable.
func peakRSSMB() float64 { return procStatusMB("VmHWM:") }

// currentRSSMB is the process's resident memory now.
func currentRSSMB() float64 { return procStatusMB("VmRSS:") }

// heapMB is the Go heap in use after a collection.
func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return math.Round(float64(ms.HeapInuse)/(1<<20)*10) / 10
}

func procStatusMB(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					return math.Round(kb/1024*10) / 10
				}
			}
		}
	}
	return 0
}

// fsType names the file system of dir (tmpfs makes fsync free and the durability figures meaningless).
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Clean(dir), &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case 0xEF53:
		return "ext4"
	case 0x01021994:
		return "tmpfs"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// progress draws "[#####     ] 2500/5000 accepted" on w until done is closed.
func progress(w io.Writer, done <-chan struct{}, stopped chan<- struct{}, n int, submitted *atomic.Int64) {
	defer close(stopped)
	if w == nil {
		return
	}
	const width = 30
	draw := func() {
		got := int(submitted.Load())
		frac := float64(got) / float64(max(1, n))
		bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(" ", width-int(min(1, frac)*width))
		fmt.Fprintf(w, "\r[%s] %d/%d accepted ", bar, got, n)
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			draw()
		case <-done:
			draw()
			fmt.Fprintln(w)
			return
		}
	}
}
