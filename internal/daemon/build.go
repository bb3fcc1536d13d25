package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/metrics"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/smtpserver"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsreport"
)

// New builds the gateway; nothing runs until Run. Each component has its own constructor below, run in
// dependency order; a component that holds resources registers how to release them, and when a later one
// fails New releases everything built so far, in reverse order, before it returns the error.
func New(ctx context.Context, o Options) (_ *Daemon, err error) {
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
	d := &Daemon{cfg: cfg, log: log, now: now, notify: o.Notify, instance: nodes.NewInstance()}
	d.comps.now = now
	d.logLevel, d.fixedRoots = o.LogLevel, o.Roots != nil
	defer func() {
		if err != nil {
			err = errors.Join(err, d.release(context.Background()))
		}
	}()
	steps := []func(context.Context, Options) error{
		// The metrics come first: every component reports to them from its start. Their sources are read
		// at scrape time, once the daemon runs.
		d.buildMetrics,
		d.openStore,
		d.openShared,
		d.openOutbound,
		d.openSTS,
		d.openSettings,
		d.openNodes,
		d.openDKIM,
		d.openRecorder,
		d.buildDelivery,
		d.openQueue,
		d.registerChecks,
		d.buildSMTP,
		d.buildAdmin,
		d.buildConsole,
	}
	for _, step := range steps {
		if err := step(ctx, o); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// onRelease registers how to release a component just built; release runs them in reverse order.
func (d *Daemon) onRelease(f func(context.Context) error) {
	d.releasers = append(d.releasers, f)
}

// release releases every component built so far, last built first, once.
func (d *Daemon) release(ctx context.Context) error {
	var errs []error
	for i := len(d.releasers) - 1; i >= 0; i-- {
		errs = append(errs, d.releasers[i](ctx))
	}
	d.releasers = nil
	return errors.Join(errs...)
}

func (d *Daemon) openStore(context.Context, Options) error {
	// The same checks `mxgate check-config` runs, so that a file it accepts is one the daemon starts with.
	if err := config.Preflight(d.cfg); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if err := os.MkdirAll(d.cfg.Data.Dir, 0o700); err != nil {
		return fmt.Errorf("data.dir: %w", err)
	}
	db, err := store.OpenSQLite(filepath.Join(d.cfg.Data.Dir, "state.db"))
	if err != nil {
		return err
	}
	d.DB = db
	d.onRelease(func(context.Context) error { return db.Close() })
	return nil
}

func (d *Daemon) openOutbound(_ context.Context, o Options) error {
	out, err := NewOutbound(d.cfg, o.Roots, o.Resolver)
	if err != nil {
		return err
	}
	d.roots.Store(out.Roots)
	// The HTTPS client keeps its settings; its transport is swapped when tls.ca_file is reloaded.
	d.https.set(out.HTTP.Transport)
	client := *out.HTTP
	client.Transport = &d.https
	out.HTTP = &client
	d.dnsCache.Store(dnsx.CacheOf(out.Resolver))
	// Every lookup's temporary failure is counted by reason (mxgate_dns_failures_total).
	out.Resolver = dnsx.Observed{Resolver: out.Resolver, OnFailure: d.Metrics.DNSFailure}
	d.out = out
	d.httpClient = out.HTTP
	return nil
}

func (d *Daemon) openSTS(ctx context.Context, _ Options) error {
	cfg := d.cfg
	o := mtastscache.Options{
		DB:             d.DB,
		Resolver:       d.out.Resolver,
		Fetcher:        &mtasts.Fetcher{Client: d.out.HTTP, MaxBody: cfg.MTASTS.MaxPolicyBytes, Timeout: cfg.MTASTS.FetchTimeout.Duration()},
		Now:            d.now,
		Logger:         d.log.With("component", "mtastscache"),
		FailureBackoff: cfg.MTASTS.FailureBackoff.Duration(),
	}
	if d.pg != nil {
		// Cluster mode: one policy cache for the cluster, with this node's SQLite database as its local copy.
		o.Store, o.Local, o.Node = mtastscache.PostgresStore{PG: d.pg}, mtastscache.SQLiteStore{DB: d.DB}, cfg.Node
		if o.Node == "" {
			o.Node, _ = os.Hostname()
		}
		// The lease is held by this process, not by the name: two processes given one name by mistake
		// must not both believe they hold it.
		o.Node += "/" + d.instance
	}
	c, err := mtastscache.New(ctx, o)
	if err != nil {
		return err
	}
	d.STS = c
	return nil
}

func (d *Daemon) openSettings(ctx context.Context, _ Options) error {
	var s *settings.Store
	var err error
	if d.pg != nil {
		s, err = d.openClusterSettings(ctx)
	} else {
		s, err = settings.OpenStorage(ctx, settings.SQLiteStorage{DB: d.DB}, seedFromConfig(d.cfg), d.now)
	}
	if err != nil {
		return err
	}
	d.settingsStore = s
	ps, err := policySettings(s.Current())
	if err != nil {
		return err
	}
	d.settings.Store(ps)
	d.running.Store(int64(s.Current().Generation))
	s.Watch(func(snap settings.Snapshot) {
		ps, err := policySettings(snap)
		if err != nil {
			// Unreachable while settings validates every staged value with the same parser; should a stored
			// value still fail, the previous TLS settings stay in force rather than losing a rule.
			d.log.Error("settings committed but not applied: TLS rules do not parse; the previous generation's TLS settings stay in force", "generation", snap.Generation, "err", err)
			return
		}
		d.settings.Store(ps)
		d.running.Store(int64(snap.Generation))
		d.pokeHeartbeat()
		d.Metrics.SettingsCommitted()
		d.log.Info("settings committed", "generation", snap.Generation)
	})
	return nil
}

func (d *Daemon) openRecorder(ctx context.Context, _ Options) error {
	if d.pg != nil {
		// In a cluster, every node adds its sessions to the aggregates in the shared database, and the reports
		// are built from there; this node's SQLite keeps them while that database is unreachable.
		d.reportStore = tlsreport.NewPostgresStore(d.pg)
	}
	r, err := tlsreport.NewRecorder(ctx, d.DB, tlsreport.RecorderOptions{Now: d.now, Logger: d.log.With("component", "tlsreport"), Store: d.reportStore})
	if err != nil {
		return err
	}
	d.Recorder = r
	d.onRelease(r.Close)
	return nil
}

func (d *Daemon) buildDelivery(_ context.Context, o Options) error {
	cfg := d.cfg
	routes, err := routesFromConfig(cfg)
	if err != nil {
		return err
	}
	d.routes.Store(&routes)
	d.Policy = &tlspolicy.Decider{
		Settings:   d.settings.Load,
		STS:        stsSource{d.STS},
		TrustStore: d.roots.Load,
		Now:        d.now,
		Sessions:   tls.NewLRUClientSessionCache(1024),
	}
	d.Deliv = &delivery.Deliverer{
		Resolver:            d.out.Resolver,
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
		Now:                 d.now,
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
	deliv := d.Deliv
	d.onRelease(func(context.Context) error { deliv.Close(); return nil })
	return nil
}

func (d *Daemon) openQueue(ctx context.Context, o Options) error {
	cfg := d.cfg
	spoolSync, warning := ResolveSpoolSync(cfg.Queue.SpoolSync)
	if warning != "" {
		d.log.Warn(warning)
		d.spoolSyncWarning = warning
	}
	q, err := queue.Open(ctx, queue.Options{
		Dir:          filepath.Join(cfg.Data.Dir, "spool"),
		DB:           d.DB,
		Deliverer:    d.Deliv,
		Now:          d.now,
		Logger:       d.log.With("component", "queue"),
		Hostname:     cfg.SMTP.Hostname,
		Postmaster:   "postmaster@" + d.defaultMailHost(),
		MaxLifetime:  cfg.Queue.MaxLifetime.Duration(),
		Backoff:      queue.Backoff{Initial: cfg.Queue.RetryInitial.Duration(), Max: cfg.Queue.RetryMax.Duration(), Factor: cfg.Queue.RetryFactor, Jitter: cfg.Queue.RetryJitter},
		Concurrency:  cfg.Queue.Concurrency,
		PerDomain:    cfg.Queue.PerDomain,
		MaxBatch:     cfg.Queue.MaxBatch,
		DrainTimeout: cfg.Queue.DrainTimeout.Duration(),
		GroupSync:    spoolSync == config.SpoolSyncGroup,
		// Bounces of TLS report mail go to the postmaster, never back into a report loop.
		ReportBounceTo: "postmaster@" + d.defaultMailHost(),
		OnSettled: func(s queue.Settled) {
			d.Metrics.Settled(string(s.Outcome), s.Delay)
			if o.OnSettled != nil {
				o.OnSettled(s)
			}
		},
		// The delivery journal failing does not stop deliveries, but a crash may then repeat some: say so
		// in status and mxgate_component_up until a write works again.
		JournalState: func(err error) {
			if err != nil {
				d.comps.set(componentJournal, admin.ComponentFailed, "delivery journal write failed (a crash may deliver recent messages twice): "+err.Error())
				return
			}
			d.comps.set(componentJournal, admin.ComponentRunning, "")
		},
		// A full disk stops the recording of delivery results and intake: say so until there is room.
		StorageState: func(err error) {
			if err != nil {
				d.comps.set(componentStorage, admin.ComponentDegraded, err.Error())
				return
			}
			d.comps.set(componentStorage, admin.ComponentRunning, "")
		},
		ArchiveRetention:    cfg.Queue.TrackRetention.Duration(),
		TrackingOutbox:      d.pg != nil && cfg.Queue.TrackRetention.Duration() >= 0,
		DelayWarning:        cfg.Queue.DelayWarningTime.Duration(),
		DelayWarningDefault: cfg.Queue.DelayWarningDefault,
	})
	if err != nil {
		return err
	}
	d.Queue = q
	if q.JournalErr() == nil {
		d.comps.set(componentJournal, admin.ComponentRunning, "")
	}
	if q.StorageErr() == nil {
		d.comps.set(componentStorage, admin.ComponentRunning, "")
	}
	d.onRelease(func(context.Context) error { return q.Close() })
	return nil
}

// registerChecks makes the components' own construction from settings the check of every staging, commit
// and rollback, so that no commit can switch a component off: the report sender (TLSRPT.*) and the TLS
// decision point (the per-domain rules).
func (d *Daemon) registerChecks(context.Context, Options) error {
	d.settingsStore.AddCheck(settings.Check{Component: componentTLSRPT, Check: func(s settings.Snapshot) error {
		_, err := d.reporterFrom(s)
		return err
	}})
	d.settingsStore.AddCheck(settings.Check{Component: "tlspolicy", Check: func(s settings.Snapshot) error {
		_, err := policySettings(s)
		return err
	}})
	return nil
}

func (d *Daemon) buildMetrics(context.Context, Options) error {
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
		DNSCache: func() (dnsx.CacheStats, bool) {
			c := d.dnsCache.Load()
			if c == nil {
				return dnsx.CacheStats{}, false
			}
			return c.Stats(), true
		},
		Components: d.comps.up,
		Now:        d.now,
	})
	return nil
}

func (d *Daemon) buildSMTP(_ context.Context, o Options) error {
	cfg := d.cfg
	var srvTLS *tls.Config
	if cfg.SMTP.StartTLS() {
		cert, err := loadCert(cfg.SMTP.TLSCertFile, cfg.SMTP.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("smtp.tls_cert_file: %w", err)
		}
		d.cert.Store(cert)
		// Read at every handshake: Reload replaces the certificate without a restart.
		srvTLS = &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return d.cert.Load(), nil },
			MinVersion:     tls.VersionTLS12,
		}
	}
	srv, err := smtpserver.New(smtpserver.Config{
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
		Now:             d.now,
		TempError:       submitError,
		Observer:        d.Metrics.Intake(),
	}, countingSubmitter{d.Queue, d}, d.log.With("component", "smtp"))
	if err != nil {
		return err
	}
	d.SMTP = srv
	d.smtpLn, d.adminLn = o.SMTPListener, o.AdminListener
	return nil
}

func (d *Daemon) buildAdmin(context.Context, Options) error {
	if d.cfg.Admin.TLS() {
		cert, err := tls.LoadX509KeyPair(d.cfg.Admin.TLSCertFile, d.cfg.Admin.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("admin.tls_cert_file: %w", err)
		}
		d.adminTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	tok, created, err := admin.LoadOrCreateToken(d.cfg.Data.Dir)
	if err != nil {
		return err
	}
	tokPath := admin.TokenPath(d.cfg.Data.Dir)
	if created {
		d.log.Info("admin token created", "file", tokPath)
	}
	if admin.TokenFileInsecure(tokPath) {
		d.log.Warn("admin token file is readable by group or others: chmod 600 it", "file", tokPath)
	}
	resolver := d.out.Resolver
	d.Admin, err = admin.New(admin.Options{
		Token:         tok,
		Queue:         d.Queue,
		STS:           d.STS,
		Metrics:       d.Metrics.Handler(),
		Logger:        d.log.With("component", "admin"),
		Now:           d.now,
		Explain:       d.Explain,
		Status:        d.Status,
		Components:    d.comps.list,
		Ready:         d.ready,
		Trace:         d.trace,
		Settings:      d.settingsStore,
		Reports:       d.reportsAPI,
		Cluster:       clusterAPI{d},
		ClusterSecret: d.clusterSecret,
		LookupTLSRPT: func(ctx context.Context, domain string) ([]string, error) {
			txts, _, err := resolver.LookupTXT(ctx, "_smtp._tls."+domain)
			return txts, err
		},
		Accounts: d.consoleAccounts(),
		// The console is built next (buildConsole); requests are served only after both exist.
		Session: func(r *http.Request) (admin.Principal, bool) { return d.Console.Principal(r) },
	})
	return err
}

func (d *Daemon) buildConsole(ctx context.Context, o Options) error {
	pwFile := filepath.Join(d.cfg.Data.Dir, console.PasswordFileName)
	if d.pg != nil {
		d.seedSharedAccounts(ctx, o, pwFile)
	} else {
		pw, created, err := console.Bootstrap(pwFile)
		if err != nil {
			return err
		}
		if created {
			d.showBootstrapPassword(o, pw, pwFile)
		}
	}
	var err error
	d.Console, err = console.New(console.Options{
		Queue:           d.Queue,
		STS:             d.STS,
		Settings:        d.settingsStore,
		Reports:         d.reportsAPI,
		Explain:         d.Explain,
		Components:      d.comps.list,
		DKIM:            d.DKIM,
		PasswordFile:    pwFile,
		Accounts:        d.consoleAccounts(),
		ClusterCounters: d.clusterCounters(),
		Node:            d.cfg.Node,
		Trace:           d.trace,
		Cluster:         clusterAPI{d},
		Logger:          d.log.With("component", "console"),
		Now:             d.now,
	})
	if err != nil {
		return err
	}
	// The dashboard counts from stored data: what the queue and its archive hold of the last day.
	if h, err := d.Queue.HistorySince(ctx, d.now().Add(-console.Window)); err != nil {
		d.log.Error("console: cannot read the delivery history; the dashboard starts empty", "err", err)
	} else {
		d.Console.Replay(h)
	}
	return nil
}
