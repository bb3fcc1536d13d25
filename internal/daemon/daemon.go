// Package daemon assembles a running mxgate from its configuration: the state store, the durable queue, the
// SMTP intake, the MTA-STS policy cache, the TLS decision point, delivery and the admin API. It holds no
// mail logic of its own; cmd/mxgate, the demo and the load tool all start a gateway through it.
package daemon

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/metrics"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/smtpserver"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsreport"
)

// Options are what a caller may set beside the configuration.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Roots, when set, replaces the trust store (tests and the demo trust only their own CA). Otherwise the
	// system pool plus tls.ca_file is used.
	Roots *x509.CertPool
	// Resolver, when set, replaces the configured DNS resolver.
	Resolver dnsx.Resolver
	// SMTPListener and AdminListener, when set, are used instead of listening on the configured addresses.
	SMTPListener  net.Listener
	AdminListener net.Listener
	// OnDelivery, when set, sees every recipient outcome of every attempt (the demo and the load tool).
	OnDelivery func(delivery.Event)
	// OnSettled, when set, sees every recipient that reached a final state, once the queue has recorded it.
	OnSettled func(queue.Settled)
	// BootstrapOut, when set, receives the one-time console password at first start as a line of text;
	// nil means it is logged, as one structured record (docs/logs.md), so that a JSON log stays JSON.
	BootstrapOut io.Writer
	// ConsolePassword, when set, receives the one-time console password at first start instead of the
	// log and BootstrapOut (the demo prints it with the admin URL).
	ConsolePassword func(password, file string)
	// LogLevel, when set, is the level of Logger, which Reload changes when log.level does.
	LogLevel *slog.LevelVar
	// Notify, when set, tells the service manager about the daemon's state (sdnotify.Notifier.Notify):
	// READY=1 once the listeners are bound and every component runs, STOPPING=1 when shutdown begins.
	Notify func(assignments ...string) error
	// HeartbeatInterval is how often the node writes its row of the node registry; 0 means
	// nodes.DefaultInterval. A node is flagged silent after four intervals without one.
	HeartbeatInterval time.Duration
	// PeerTimeout bounds a call to another node's admin API (listing its queue, one message's action);
	// 0 means 10 s. A bulk action is not bound by it: it runs to the end on the node that does it.
	PeerTimeout time.Duration
}

// Daemon is a running gateway.
type Daemon struct {
	cfg *config.Config
	log *slog.Logger
	now func() time.Time
	DB  *store.DB
	// pg is the PostgreSQL database a cluster shares ([data] database), nil on a single node.
	pg *store.PG
	// pgDown is why the shared database did not answer at start (nil when it did, or on a single node).
	pgDown error
	// accountsPending, when set, seeds the shared console accounts, which could not be at start; Run tries
	// it until it succeeds.
	accountsPending func(context.Context) error

	Queue  *queue.Queue
	STS    *mtastscache.Cache
	Policy *tlspolicy.Decider
	Deliv  *delivery.Deliverer
	SMTP   *smtpserver.Server
	// Settings is the committed settings store; Recorder records TLS sessions for reports.
	settingsStore *settings.Store
	Recorder      *tlsreport.Recorder
	httpClient    *http.Client
	reports       reportLoop
	Metrics       *metrics.Metrics
	Admin         *admin.Server
	Console       *console.Console
	started       atomic.Pointer[time.Time] // when Run started; nil before

	// reportStore is the TLS reports' store in cluster mode: the shared database (nil: the node's SQLite).
	reportStore tlsreport.Store

	settings atomic.Pointer[tlspolicy.Settings]
	// running is the settings generation the TLS decision point uses.
	running atomic.Int64
	routes  atomic.Pointer[[]delivery.Route]

	smtpLn, adminLn net.Listener
	// adminTLS, when set (admin.tls_cert_file), makes the admin listener serve HTTPS.
	adminTLS *tls.Config

	out   Outbound
	comps components
	// dnsCache is the resolver's answer cache (dns.cache), nil without one; its counters are metrics.
	dnsCache atomic.Pointer[dnsx.Cache]
	// dkimKey is the TLS report signing key made at first start (dkimPath).
	dkimKey  crypto.Signer
	dkimPath string

	// What Reload replaces: the SMTP server certificate, the trust store and the HTTPS transport built on
	// it, and the log level. fixedRoots is true when Options.Roots replaced the trust store.
	cert       atomic.Pointer[tls.Certificate]
	roots      atomic.Pointer[x509.CertPool]
	https      swapTransport
	logLevel   *slog.LevelVar
	fixedRoots bool
	reloadMu   sync.Mutex
	level      string // the log level last applied
	// releasers release the components built so far, in reverse order (see New and Close).
	releasers []func(context.Context) error

	warnings warnings
	// spoolSyncWarning says why queue.spool_sync = "auto" fell back to "file" (shown by status).
	spoolSyncWarning string
	notify           func(assignments ...string) error

	// The node registry (nodes.go): where it is kept, the cluster secret once read, the heartbeat's
	// interval, the bounds after which a node is silent or lagging, and the request for a heartbeat now.
	nodeStore   nodes.Storage
	nodesReady  atomic.Bool // the registry's migrations ran
	secret      atomic.Pointer[string]
	beatEvery   time.Duration
	silentAfter time.Duration
	peerTimeout time.Duration
	lagAfter    time.Duration
	beatNow     chan struct{}
	// instance identifies this process in the registry (and as the holder of the MTA-STS refresh lease);
	// clash is what the heartbeat found of another process under the same node name.
	instance string
	clash    clashState
}

// adminHandler serves the API, metrics and probes, and the web console for everything else.
func (d *Daemon) adminHandler() http.Handler {
	api, ui := d.Admin.Handler(), d.Console.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/healthz", p == "/readyz", p == "/metrics", strings.HasPrefix(p, "/api/"):
			api.ServeHTTP(w, r)
		default:
			ui.ServeHTTP(w, r)
		}
	})
}

// submitError maps a failure to store a message to the SMTP reply: 452 4.3.1 when the disk is full, 451
// otherwise. Never 250.
func submitError(err error) *smtp.SMTPError {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, queue.ErrNoSpace) {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error storing the message, try again later"}
}

// SMTPAddr is the address the SMTP listener is bound to (after Listen).
func (d *Daemon) SMTPAddr() string {
	if d.smtpLn == nil {
		return ""
	}
	return d.smtpLn.Addr().String()
}

// ownListeners is the address of the SMTP listener, for MX loop detection: deliveries start in Run, after
// Listen has bound it.
func (d *Daemon) ownListeners() []netip.AddrPort {
	if d.smtpLn == nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(d.smtpLn.Addr().String())
	if err != nil {
		return nil
	}
	return []netip.AddrPort{ap}
}

// AdminAddr is the address the admin API listens on (after Listen).
func (d *Daemon) AdminAddr() string {
	if d.adminLn == nil {
		return ""
	}
	return d.adminLn.Addr().String()
}

// Listen binds the SMTP and admin listeners that are not bound yet, so that a port clash fails at start.
func (d *Daemon) Listen() error {
	if d.smtpLn == nil {
		ln, err := net.Listen("tcp", d.cfg.SMTP.Listen)
		if err != nil {
			return fmt.Errorf("smtp.listen: %w", err)
		}
		d.smtpLn = ln
	}
	if d.adminLn == nil {
		ln, err := net.Listen("tcp", d.cfg.Admin.Listen)
		if err != nil {
			return fmt.Errorf("admin.listen: %w", err)
		}
		d.adminLn = ln
	}
	return nil
}

// Run serves until ctx is cancelled, then stops intake, lets sessions and deliveries in progress finish up
// to the drain timeout, and closes the store.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.Listen(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, 6)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	startedAt := d.now()
	d.started.Store(&startedAt)
	wg.Add(4)
	go func() {
		defer wg.Done()
		ln := d.adminLn
		if d.adminTLS != nil {
			ln = tls.NewListener(ln, d.adminTLS)
		}
		if err := admin.ServeHandler(runCtx, ln, d.adminHandler(), d.log.With("component", "admin")); err != nil && runCtx.Err() == nil {
			errc <- fmt.Errorf("admin: %w", err)
			cancel()
		}
	}()
	d.comps.set(componentQueue, admin.ComponentRunning, "")
	go func() {
		defer wg.Done()
		err := d.Queue.Run(runCtx)
		if err != nil && runCtx.Err() == nil {
			d.comps.set(componentQueue, admin.ComponentFailed, err.Error())
		}
		errc <- err
	}()
	go func() { defer wg.Done(); d.STS.Run(runCtx) }()
	d.restartReports(runCtx, d.settingsStore.Current())
	d.settingsStore.Watch(func(s settings.Snapshot) { d.restartReports(runCtx, s) })
	if d.pg != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.followSettings(runCtx) }()
	}
	if d.pg != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.runCounters(runCtx) }()
		if d.cfg.Queue.TrackRetention.Duration() >= 0 {
			wg.Add(1)
			go func() { defer wg.Done(); d.runTracking(runCtx) }()
		}
	}
	if seed := d.accountsPending; seed != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.retrySeedAccounts(runCtx, seed) }()
	}
	// The first heartbeat before READY: the node lists itself from the moment it says it runs.
	d.beat(runCtx)
	wg.Add(1)
	go func() { defer wg.Done(); d.runHeartbeat(runCtx) }()
	d.comps.set(componentSMTP, admin.ComponentRunning, "")
	go func() {
		defer wg.Done()
		if err := d.SMTP.Serve(d.smtpLn); err != nil && !errors.Is(err, smtp.ErrServerClosed) && runCtx.Err() == nil {
			d.comps.set(componentSMTP, admin.ComponentFailed, err.Error())
			errc <- fmt.Errorf("smtp: %w", err)
			cancel()
		}
	}()
	d.log.Info("mxgate running", "smtp", d.SMTPAddr(), "admin", d.AdminAddr(), "data_dir", d.cfg.Data.Dir,
		"admin_token_file", admin.TokenPath(d.cfg.Data.Dir), "settings_generation", d.settingsStore.Current().Generation)
	if w := d.stubValidatorWarning(); w != "" && daneEnabled(d.settings.Load()) {
		d.log.Warn(w)
	}
	d.tellManager("READY=1", "STATUS=accepting mail on "+d.SMTPAddr())
	<-runCtx.Done()
	d.log.Info("stopping", "drain_timeout", d.cfg.Queue.DrainTimeout.Duration().String())
	d.tellManager("STOPPING=1", "STATUS=stopping: draining deliveries")
	shutdownCtx, done := context.WithTimeout(context.Background(), d.cfg.Queue.DrainTimeout.Duration()+5*time.Second)
	defer done()
	d.SMTP.Shutdown(shutdownCtx)
	wg.Wait()
	d.stopReports()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	if err := d.release(shutdownCtx); err != nil {
		errs = append(errs, err)
	}
	// The errors themselves are returned to the caller, who reports them.
	d.log.Info("stopped", "errors", len(errs))
	return errors.Join(errs...)
}

// tellManager notifies the service manager, if any. A failure is logged: the service manager then decides
// (a Type=notify unit that never hears READY=1 times out and is restarted).
func (d *Daemon) tellManager(assignments ...string) {
	if d.notify == nil {
		return
	}
	if err := d.notify(assignments...); err != nil {
		d.log.Error("cannot notify the service manager", "err", err)
	}
}

// Close releases what New built (delivery sessions, the queue, the TLS session recorder, the store) for a
// gateway that never ran; Run does it itself when it returns.
func (d *Daemon) Close() error {
	return d.release(context.Background())
}

func (d *Daemon) runningGeneration() int { return int(d.running.Load()) }

// Settings returns the committed settings store.
func (d *Daemon) Settings() *settings.Store { return d.settingsStore }

// countingSubmitter shows messages acknowledged by intake on the console (the metrics count them in intake).
type countingSubmitter struct {
	q *queue.Queue
	d *Daemon
}

func (c countingSubmitter) Submit(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	id, err := c.q.Submit(ctx, env, body)
	if err == nil {
		c.d.Console.ObserveAccepted()
	}
	return id, err
}

// seedFromConfig turns the bootstrap file's [settings] and [[domain]] tables into the first generation.
func seedFromConfig(cfg *config.Config) map[string]string {
	seed := map[string]string{}
	for k, v := range cfg.Settings {
		seed[k] = v
	}
	for _, r := range cfg.Domains {
		seed[settings.DomainPrefix+r.Name+".TLS"] = r.Rule().String()
	}
	return seed
}

// policySettings is what the TLS decision point needs of a settings generation. A rule that does not parse is
// an error: dropping it would deliver with less TLS than the administrator asked for.
func policySettings(s settings.Snapshot) (*tlspolicy.Settings, error) {
	rules, err := s.DomainRules()
	if err != nil {
		return nil, err
	}
	return &tlspolicy.Settings{
		EnableMTASTS: s.MTASTSEnabled(),
		EnableDANE:   s.DANEEnabled(),
		Rules:        rules,

		TLSRequiredNoRelaxesRules: s.TLSRequiredNoRelaxesRules(),
	}, nil
}

// routesFromConfig returns the static routes. An unknown level is an error, never a downgrade to
// opportunistic.
func routesFromConfig(cfg *config.Config) ([]delivery.Route, error) {
	var out []delivery.Route
	var errs []error
	for i, r := range cfg.Routes {
		lvl, err := tlspolicy.ParseLevel(string(r.TLS))
		if err != nil {
			errs = append(errs, fmt.Errorf("route[%d].tls: %w", i, err))
			continue
		}
		// A configuration built in code may leave auth_min_tls empty: the default, required-verify.
		if r.AuthMinTLS != "" && !config.ValidAuthMinTLS(r.AuthMinTLS) {
			errs = append(errs, fmt.Errorf("route[%d].auth_min_tls: unknown value %q", i, r.AuthMinTLS))
			continue
		}
		out = append(out, delivery.Route{Domains: r.Domains, Hosts: r.Hosts, Port: r.Port, Level: lvl,
			AuthUser: r.AuthUser, AuthPassword: r.AuthPassword, AuthMinTLS: r.AuthMinTLS})
	}
	return out, errors.Join(errs...)
}

// stsSource adapts the policy cache to the decision point.
type stsSource struct{ c *mtastscache.Cache }

func (s stsSource) Lookup(ctx context.Context, domain address.Domain) (tlspolicy.STSResult, error) {
	l, err := s.c.Get(ctx, domain)
	if err != nil {
		return tlspolicy.STSResult{}, err
	}
	return tlspolicy.STSResult{Policy: l.Policy, ID: l.ID, Failure: l.Failure, FailureDetail: l.FailureDetail}, nil
}
