package bench

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"sync"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
)

// gatewayStats is what the gateway side of a run reports: its own CPU and memory when it runs in its own
// process (the whole process's otherwise), its index commits, TLS session cache use and delivery outcomes.
type gatewayStats struct {
	UserSeconds     float64        `json:"user_seconds"`
	SysSeconds      float64        `json:"sys_seconds"`
	PeakRSSMB       float64        `json:"peak_rss_mb"`
	Commits         int64          `json:"commits"`
	SessionsOffered int64          `json:"sessions_offered"`
	SessionsStored  int64          `json:"sessions_stored"`
	Total           int            `json:"total"`
	Delivered       int            `json:"delivered"`
	Deferred        int            `json:"deferred"`
	Failed          int            `json:"failed"`
	Verified        int            `json:"verified"`
	TLS             map[string]int `json:"tls"`
}

// gateway is the gateway under load: in this process (local) or in a child process (external).
type gateway interface {
	// addr is the SMTP listener's "ip:port".
	addr() string
	// stats reports the gateway's counters now.
	stats(ctx context.Context) (gatewayStats, error)
	// waitDelivered blocks until n recipients were delivered (or ctx is done), then reports the counters.
	waitDelivered(ctx context.Context, n int) (gatewayStats, error)
	// close stops the gateway.
	close() error
}

// localGateway runs the gateway in this process, through daemon.New as the demo does.
type localGateway struct {
	d        *daemon.Daemon
	ln       net.Listener
	adminLn  net.Listener
	ev       *events
	sessions *countingCache
	stop     func() error
}

func startLocal(ctx context.Context, cfg *config.Config, roots *x509.CertPool, log *slog.Logger) (*localGateway, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, err
	}
	g, err := runLocal(ctx, ln, &events{}, daemon.Options{Config: cfg, Logger: log, Roots: roots, AdminListener: aln})
	if err != nil {
		ln.Close()
		aln.Close()
		return nil, fmt.Errorf("bench: gateway: %w", err)
	}
	g.adminLn = aln
	return g, nil
}

// runLocal creates the daemon of o serving SMTP on ln and reporting deliveries to ev, instruments its TLS
// session cache (counts resumption offers) and runs it until the gateway's stop. It does not close ln on
// error.
func runLocal(ctx context.Context, ln net.Listener, ev *events, o daemon.Options) (*localGateway, error) {
	o.BootstrapOut, o.SMTPListener, o.OnDelivery = io.Discard, ln, ev.add
	d, err := daemon.New(ctx, o)
	if err != nil {
		return nil, err
	}
	g := &localGateway{d: d, ln: ln, ev: ev}
	// Nothing runs before d.Run: the cache can be replaced.
	g.sessions = &countingCache{inner: d.Policy.Sessions}
	d.Policy.Sessions = g.sessions

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()
	var once sync.Once
	var err2 error
	g.stop = func() error {
		once.Do(func() { stop(); err2 = <-runErr })
		return err2
	}
	return g, nil
}

func (g *localGateway) addr() string { return g.ln.Addr().String() }

// adminAddr is the admin API's "ip:port"; "" when this gateway has no admin listener of its own.
func (g *localGateway) adminAddr() string {
	if g.adminLn == nil {
		return ""
	}
	return g.adminLn.Addr().String()
}

func (g *localGateway) stats(context.Context) (gatewayStats, error) {
	ru := rusage()
	s := gatewayStats{UserSeconds: ru.user, SysSeconds: ru.sys, PeakRSSMB: peakRSSMB(),
		Commits: g.d.Queue.Commits(), SessionsOffered: g.sessions.hits.Load(), SessionsStored: g.sessions.puts.Load()}
	g.ev.snapshot(&s)
	return s, nil
}

func (g *localGateway) waitDelivered(ctx context.Context, n int) (gatewayStats, error) {
	if err := g.ev.wait(ctx, n); err != nil {
		s, _ := g.stats(ctx)
		return s, err
	}
	return g.stats(ctx)
}

func (g *localGateway) close() error { return g.stop() }

// gatewaySpec is the first line the load tool sends a gateway process: its configuration and the roots it
// trusts (the simulated internet's CA).
type gatewaySpec struct {
	Config   *config.Config `json:"config"`
	RootsPEM []byte         `json:"roots_pem"`
	Verbose  bool           `json:"verbose"`
	// CPUProfile, when set, is the file the gateway process writes a CPU profile of its run to (from its
	// start until it answers the request that waits for the deliveries).
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// gatewayRequest is one request to a gateway process; every request is answered with one line holding a
// gatewayReply.
type gatewayRequest struct {
	// Wait, when positive, asks the gateway to answer once that many recipients were delivered.
	Wait int `json:"wait,omitempty"`
}

type gatewayReply struct {
	Addr string `json:"addr,omitempty"`
	// AdminAddr is the admin API's "ip:port" (its token is in the data directory).
	AdminAddr string       `json:"admin_addr,omitempty"`
	Stats     gatewayStats `json:"stats"`
	Error     string       `json:"error,omitempty"`
}

// ServeGateway is the gateway process of an external run (`mxgate bench --external` starts it as a child):
// it reads a gatewaySpec from in, starts the gateway, writes its SMTP address to out, then answers requests
// (one JSON line each) until in is closed, when it stops the gateway. Its logs go to log when the spec asks
// for them.
func ServeGateway(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	dec := json.NewDecoder(bufio.NewReader(in))
	enc := json.NewEncoder(out)
	var spec gatewaySpec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("bench gateway: reading the specification: %w", err)
	}
	if spec.Config == nil {
		return errors.New("bench gateway: the specification has no configuration")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(spec.RootsPEM) {
		return errors.New("bench gateway: the specification's roots hold no certificate")
	}
	if !spec.Verbose || log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stopProfile := func() {}
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			_ = enc.Encode(gatewayReply{Error: err.Error()})
			return fmt.Errorf("bench gateway: cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			_ = enc.Encode(gatewayReply{Error: err.Error()})
			return fmt.Errorf("bench gateway: cpu profile: %w", err)
		}
		var once sync.Once
		stopProfile = func() { once.Do(func() { pprof.StopCPUProfile(); f.Close() }) }
	}
	defer stopProfile()
	g, err := startLocal(ctx, spec.Config, roots, log)
	if err != nil {
		_ = enc.Encode(gatewayReply{Error: err.Error()})
		return err
	}
	defer g.close()
	if err := enc.Encode(gatewayReply{Addr: g.addr(), AdminAddr: g.adminAddr()}); err != nil {
		return err
	}
	for {
		var req gatewayRequest
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return g.close()
			}
			return fmt.Errorf("bench gateway: reading a request: %w", err)
		}
		var rep gatewayReply
		var err error
		if req.Wait > 0 {
			rep.Stats, err = g.waitDelivered(ctx, req.Wait)
			stopProfile()
		} else {
			rep.Stats, err = g.stats(ctx)
		}
		if err != nil {
			rep.Error = err.Error()
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
}

// externalGateway is a gateway in a child process running ServeGateway, so that its CPU and memory are
// measured apart from the load tool's clients and the simulated internet.
type externalGateway struct {
	cmd       *exec.Cmd
	in        io.WriteCloser
	dec       *json.Decoder
	mu        sync.Mutex
	smtpAddr  string
	adminAddr string
	done      chan error
}

func startExternal(ctx context.Context, command []string, spec gatewaySpec) (*externalGateway, error) {
	if len(command) == 0 {
		return nil, errors.New("bench: an external gateway needs the command that starts it")
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting the gateway process: %w", err)
	}
	g := &externalGateway{cmd: cmd, in: in, dec: json.NewDecoder(bufio.NewReader(outPipe)), done: make(chan error, 1)}
	fail := func(err error) (*externalGateway, error) {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	if err := json.NewEncoder(in).Encode(spec); err != nil {
		return fail(fmt.Errorf("bench: gateway process: %w", err))
	}
	var rep gatewayReply
	if err := g.dec.Decode(&rep); err != nil {
		return fail(fmt.Errorf("bench: gateway process did not start: %w", err))
	}
	if rep.Error != "" || rep.Addr == "" {
		return fail(fmt.Errorf("bench: gateway process did not start: %s", rep.Error))
	}
	g.smtpAddr, g.adminAddr = rep.Addr, rep.AdminAddr
	return g, nil
}

func (g *externalGateway) addr() string { return g.smtpAddr }

func (g *externalGateway) request(req gatewayRequest) (gatewayStats, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := json.NewEncoder(g.in).Encode(req); err != nil {
		return gatewayStats{}, fmt.Errorf("bench: gateway process: %w", err)
	}
	var rep gatewayReply
	if err := g.dec.Decode(&rep); err != nil {
		return gatewayStats{}, fmt.Errorf("bench: gateway process: %w", err)
	}
	if rep.Error != "" {
		return rep.Stats, fmt.Errorf("bench: gateway process: %s", rep.Error)
	}
	return rep.Stats, nil
}

// stats and waitDelivered block on the child's answer; the child is killed when the run's context ends
// (exec.CommandContext), which ends the wait.
func (g *externalGateway) stats(context.Context) (gatewayStats, error) {
	return g.request(gatewayRequest{})
}

func (g *externalGateway) waitDelivered(_ context.Context, n int) (gatewayStats, error) {
	return g.request(gatewayRequest{Wait: n})
}

// close closes the child's input, which stops the gateway, and waits for it to exit.
func (g *externalGateway) close() error {
	g.in.Close()
	return g.cmd.Wait()
}
