// Package daemon assembles a running mxgate from its configuration: the state store, the durable queue, the
// SMTP intake, the MTA-STS policy cache, the TLS decision point, delivery and the admin API. It holds no
// mail logic of its own; cmd/mxgate, the demo and the load tool all start a gateway through it.
package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
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
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mtastscache"
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
	// BootstrapOut, when set, receives the one-time console password at first start as a line of text;
	// nil means it is logged, as one structured record (docs/logs.md), so that a JSON log stays JSON.
	BootstrapOut io.Writer
	// ConsolePassword, when set, receives the one-time console password at first start instead of the
	// log and BootstrapOut (the demo prints it with the admin URL).
	ConsolePassword func(password, file string)
	// Notify, when set, tells the service manager about the daemon's state (sdnotify.Notifier.Notify):
	// READY=1 once the listeners are bound and every component runs, STOPPING=1 when shutdown begins.
	Notify func(assignments ...string) error
}

// Daemon is a running gateway.
type Daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	now    func() time.Time
	DB     *store.DB
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
	warnings      warnings
	Metrics       *metrics.Metrics
	Admin         *admin.Server
	Console       *console.Console
	started       time.Time

	settings atomic.Pointer[tlspolicy.Settings]
	// running is the settings generation the TLS decision point uses.
	running atomic.Int64
	routes  atomic.Pointer[[]delivery.Route]

	smtpLn, adminLn net.Listener
	notify          func(assignments ...string) error
}

// New builds the gateway; nothing runs until Run.
func New(ctx context.Context, o Options) (*Daemon, error) {
	cfg := o.Config
	if cfg == nil {
		cfg = config.Default()
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	d := &Daemon{cfg: cfg, log: log, now: now, notify: o.Notify}

	// The metrics come first: every component reports to them from its start. Their sources are read at
	// scrape time, once the daemon runs.
	d.Metrics = metrics.New(metrics.Sources{
		Queue: func(ctx context.Context) (metrics.QueueStats, error) {
			st, err := d.Queue.Stats(ctx)
			return metrics.QueueStats{Messages: st.QueuedMessages, Recipients: st.QueuedRecipients,
				BatchesInFlight: st.InFlight, Quarantined: st.Quarantined, Oldest: st.Oldest}, err
		},
		STSCache: func() (map[string]int, map[string]uint64) {
			st := d.STS.Stats()
			byMode := map[string]int{}
			for m, n := range st.Entries {
				byMode[string(m)] = n
			}
			fetches := map[string]uint64{}
			var failed uint64
			for rt, n := range st.FetchFailures {
				fetches[string(rt)] = n
				failed += n
			}
			fetches["ok"] = st.Fetches - min(failed, st.Fetches)
			return byMode, fetches
		},
		Generations: func() (int, int) {
			return d.settingsStore.Current().Generation, d.runningGeneration()
		},
		TLSRPTDropped: func() int64 { return d.Recorder.Dropped() },
		DSNFallbacks:  func() int64 { return d.Queue.DSNFallbacks() },
		Reports: func(ctx context.Context) (map[[2]string]int, error) {
			r := d.Reporter()
			if r == nil {
				return nil, nil
			}
			sent, err := r.Sent(ctx)
			counts := map[[2]string]int{}
			for _, s := range sent {
				transport := "https"
				if strings.HasPrefix(s.Destination, "mailto:") {
					transport = "mailto"
				}
				counts[[2]string{transport, s.Status}]++
			}
			return counts, err
		},
		Now: now,
	})

	// The same checks `mxgate check-config` runs, so that a file it accepts is one the daemon starts with.
	if err := config.Preflight(cfg); err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	if err := os.MkdirAll(cfg.Data.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("data.dir: %w", err)
	}
	db, err := store.OpenSQLite(filepath.Join(cfg.Data.Dir, "state.db"))
	if err != nil {
		return nil, err
	}
	d.DB = db

	out, err := NewOutbound(cfg, o.Roots, o.Resolver)
	if err != nil {
		db.Close()
		return nil, err
	}
	roots, httpClient := out.Roots, out.HTTP
	resolver := dnsx.Observed{Resolver: out.Resolver, OnFailure: d.Metrics.DNSFailure}
	d.STS, err = mtastscache.New(ctx, mtastscache.Options{
		DB:             db,
		Resolver:       resolver,
		Fetcher:        &mtasts.Fetcher{Client: httpClient, MaxBody: cfg.MTASTS.MaxPolicyBytes, Timeout: cfg.MTASTS.FetchTimeout.Duration()},
		Now:            now,
		Logger:         log.With("component", "mtastscache"),
		FailureBackoff: cfg.MTASTS.FailureBackoff.Duration(),
	})
	if err != nil {
		db.Close()
		return nil, err
	}

	d.settingsStore, err = settings.Open(ctx, db, seedFromConfig(cfg), now)
	if err != nil {
		db.Close()
		return nil, err
	}
	ps, err := policySettings(d.settingsStore.Current())
	if err != nil {
		db.Close()
		return nil, err
	}
	d.settings.Store(ps)
	d.running.Store(int64(d.settingsStore.Current().Generation))
	d.settingsStore.Watch(func(s settings.Snapshot) {
		ps, err := policySettings(s)
		if err != nil {
			// Unreachable while settings validates every staged value with the same parser; should a stored
			// value still fail, the previous TLS settings stay in force rather than losing a rule.
			log.Error("settings committed but not applied: TLS rules do not parse; the previous generation's TLS settings stay in force", "generation", s.Generation, "err", err)
			return
		}
		d.settings.Store(ps)
		d.running.Store(int64(s.Generation))
		d.Metrics.SettingsCommitted()
		log.Info("settings committed", "generation", s.Generation)
	})
	d.Recorder, err = tlsreport.NewRecorder(ctx, db, tlsreport.RecorderOptions{Now: now, Logger: log.With("component", "tlsreport")})
	if err != nil {
		db.Close()
		return nil, err
	}
	d.httpClient = httpClient
	routes, err := routesFromConfig(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	d.routes.Store(&routes)
	d.Policy = &tlspolicy.Decider{
		Settings: d.settings.Load,
		STS:      stsSource{d.STS},
		Roots:    roots,
		Now:      now,
		Sessions: tls.NewLRUClientSessionCache(1024),
	}
	d.Deliv = &delivery.Deliverer{
		Resolver:            resolver,
		Decider:             d.Policy,
		Routes:              func() []delivery.Route { return *d.routes.Load() },
		Port:                cfg.Delivery.Port,
		Hostname:            cfg.Delivery.Hostname,
		ConnectTimeout:      cfg.Delivery.ConnectTimeout.Duration(),
		CommandTimeout:      cfg.Delivery.CommandTimeout.Duration(),
		DataTimeout:         cfg.Delivery.DataTimeout.Duration(),
		MaxAddressesPerHost: cfg.Delivery.MaxAddressesPerHost,
		LocalNames:          []string{cfg.Delivery.Hostname, cfg.SMTP.Hostname},
		Listeners:           d.ownListeners,
		Now:                 now,
		Events: func(ev delivery.Event) {
			d.Metrics.Delivery(ev)
			d.Console.Observe(ev)
			if o.OnDelivery != nil {
				o.OnDelivery(ev)
			}
		},
		Recorder: gatedRecorder{d: d, rec: d.Recorder},
		// Like Postfix's connection cache: a session stays open a few seconds for the next batch to the same
		// MX under the same plan.
		IdleTimeout: 5 * time.Second,
	}
	if src := cfg.Delivery.SourceAddr(); src.IsValid() {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		d.Deliv.Dial = nd.DialContext
	}

	d.Queue, err = queue.Open(ctx, queue.Options{
		Dir:          filepath.Join(cfg.Data.Dir, "spool"),
		DB:           db,
		Deliverer:    d.Deliv,
		Now:          now,
		Logger:       log.With("component", "queue"),
		Hostname:     cfg.SMTP.Hostname,
		Postmaster:   "postmaster@" + cfg.SMTP.Hostname,
		MaxLifetime:  cfg.Queue.MaxLifetime.Duration(),
		Backoff:      queue.Backoff{Initial: cfg.Queue.RetryInitial.Duration(), Max: cfg.Queue.RetryMax.Duration(), Factor: cfg.Queue.RetryFactor, Jitter: cfg.Queue.RetryJitter},
		Concurrency:  cfg.Queue.Concurrency,
		PerDomain:    cfg.Queue.PerDomain,
		MaxBatch:     cfg.Queue.MaxBatch,
		DrainTimeout: cfg.Queue.DrainTimeout.Duration(),
		// Bounces of TLS report mail go to the postmaster, never back into a report loop.
		ReportBounceTo:      "postmaster@" + cfg.SMTP.Hostname,
		OnSettled:           func(s queue.Settled) { d.Metrics.Settled(string(s.Outcome), s.Delay) },
		ArchiveRetention:    cfg.Queue.TrackRetention.Duration(),
		DelayWarning:        cfg.Queue.DelayWarningTime.Duration(),
		DelayWarningDefault: cfg.Queue.DelayWarningDefault,
	})
	if err != nil {
		db.Close()
		return nil, err
	}

	var srvTLS *tls.Config
	if cfg.SMTP.StartTLS() {
		cert, err := tls.LoadX509KeyPair(cfg.SMTP.TLSCertFile, cfg.SMTP.TLSKeyFile)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("smtp.tls_cert_file: %w", err)
		}
		srvTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	d.SMTP, err = smtpserver.New(smtpserver.Config{
		Hostname:        cfg.SMTP.Hostname,
		RelayNetworks:   cfg.SMTP.RelayPrefixes(),
		Users:           cfg.SMTP.Users,
		TLS:             srvTLS,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		MaxRecipients:   cfg.SMTP.MaxRecipients,
		MaxLineLength:   cfg.SMTP.MaxLineLength,
		ReadTimeout:     cfg.SMTP.ReadTimeout.Duration(),
		WriteTimeout:    cfg.SMTP.WriteTimeout.Duration(),
		MaxConnsPerIP:   cfg.SMTP.MaxConnsPerIP,
		RatePerIP:       cfg.SMTP.MessagesPerMinutePerIP,
		Now:             now,
		TempError:       submitError,
		Observer:        d.Metrics.Intake(),
	}, countingSubmitter{d.Queue, d}, log.With("component", "smtp"))
	if err != nil {
		db.Close()
		return nil, err
	}
	d.smtpLn, d.adminLn = o.SMTPListener, o.AdminListener

	tok, created, err := admin.LoadOrCreateToken(cfg.Data.Dir)
	if err != nil {
		db.Close()
		return nil, err
	}
	tokPath := admin.TokenPath(cfg.Data.Dir)
	if created {
		log.Info("admin token created", "file", tokPath)
	}
	if admin.TokenFileInsecure(tokPath) {
		log.Warn("admin token file is readable by group or others: chmod 600 it", "file", tokPath)
	}
	d.Admin, err = admin.New(admin.Options{
		Token:    tok,
		Queue:    d.Queue,
		STS:      d.STS,
		Metrics:  d.Metrics.Handler(),
		Logger:   log.With("component", "admin"),
		Now:      now,
		Explain:  d.Explain,
		Status:   func(ctx context.Context) (any, error) { return d.Status(ctx) },
		Ready:    d.ready,
		Trace:    d.Queue.Trace,
		Settings: d.settingsStore,
		Reports: func() admin.ReportsAPI {
			if r := d.Reporter(); r != nil {
				return r
			}
			return nil
		},
		LookupTLSRPT: func(ctx context.Context, domain string) ([]string, error) {
			txts, _, err := resolver.LookupTXT(ctx, "_smtp._tls."+domain)
			return txts, err
		},
	})
	if err != nil {
		db.Close()
		return nil, err
	}

	pwFile := filepath.Join(cfg.Data.Dir, "console-password")
	pw, created, err := console.Bootstrap(pwFile)
	if err != nil {
		db.Close()
		return nil, err
	}
	if created {
		// Shown once, at first start, for the administrator to log in and change it (Account page). WARN, so
		// that it shows at every log level.
		if o.ConsolePassword != nil {
			o.ConsolePassword(pw, pwFile)
		} else if o.BootstrapOut != nil {
			fmt.Fprintf(o.BootstrapOut, "mxgate: web console password for the first login: %s (stored hashed in %s; change it on the Account page)\n", pw, pwFile)
		} else {
			log.Warn("web console password for the first login: change it on the Account page",
				"console_password", pw, "password_file", pwFile)
		}
	}
	d.Console, err = console.New(console.Options{
		Queue:        d.Queue,
		STS:          d.STS,
		Settings:     d.settingsStore,
		Reports:      d.Reporter,
		Explain:      d.Explain,
		PasswordFile: pwFile,
		Trace:        d.Queue.Trace,
		Logger:       log.With("component", "console"),
		Now:          now,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	// The dashboard counts from stored data: what the queue and its archive hold of the last day.
	if h, err := d.Queue.HistorySince(ctx, now().Add(-console.Window)); err != nil {
		log.Error("console: cannot read the delivery history; the dashboard starts empty", "err", err)
	} else {
		d.Console.Replay(h)
	}
	return d, nil
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
	d.started = d.now()
	wg.Add(4)
	go func() {
		defer wg.Done()
		if err := admin.ServeHandler(runCtx, d.adminLn, d.adminHandler(), d.log.With("component", "admin")); err != nil && runCtx.Err() == nil {
			errc <- fmt.Errorf("admin: %w", err)
			cancel()
		}
	}()
	go func() { defer wg.Done(); errc <- d.Queue.Run(runCtx) }()
	go func() { defer wg.Done(); d.STS.Run(runCtx) }()
	d.restartReports(runCtx, d.settingsStore.Current())
	d.settingsStore.Watch(func(s settings.Snapshot) { d.restartReports(runCtx, s) })
	go func() {
		defer wg.Done()
		if err := d.SMTP.Serve(d.smtpLn); err != nil && !errors.Is(err, smtp.ErrServerClosed) && runCtx.Err() == nil {
			errc <- fmt.Errorf("smtp: %w", err)
			cancel()
		}
	}()
	d.log.Info("mxgate running", "smtp", d.SMTPAddr(), "admin", d.AdminAddr(), "data_dir", d.cfg.Data.Dir,
		"admin_token_file", admin.TokenPath(d.cfg.Data.Dir), "settings_generation", d.settingsStore.Current().Generation)
	d.tellManager("READY=1", "STATUS=accepting mail on "+d.SMTPAddr())
	<-runCtx.Done()
	d.tellManager("STOPPING=1", "STATUS=stopping: draining deliveries")
	shutdownCtx, done := context.WithTimeout(context.Background(), d.cfg.Queue.DrainTimeout.Duration()+5*time.Second)
	defer done()
	d.SMTP.Shutdown(shutdownCtx)
	wg.Wait()
	d.Deliv.Close()
	d.stopReports()
	if err := d.Recorder.Close(shutdownCtx); err != nil {
		errc <- err
	}
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	if err := d.Close(); err != nil {
		errs = append(errs, err)
	}
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

// Close releases the queue and the store. Run calls it.
func (d *Daemon) Close() error {
	return errors.Join(d.Queue.Close(), d.DB.Close())
}

func (d *Daemon) runningGeneration() int { return int(d.running.Load()) }

// Settings returns the committed settings store.
func (d *Daemon) Settings() *settings.Store { return d.settingsStore }

// countingSubmitter shows messages acknowledged by intake on the console.
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
