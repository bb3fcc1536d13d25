package daemon

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlsreport"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// gatedRecorder records TLS sessions only while Controller.EnableTLSRPT is on.
type gatedRecorder struct {
	d   *Daemon
	rec *tlsreport.Recorder
}

func (g gatedRecorder) Record(s tlsrpt.Session) {
	if g.d.settingsStore.Current().TLSRPTEnabled() {
		g.rec.Record(s)
		g.d.Metrics.TLSRPTSession(s.Policy.Type, s.Success)
	}
}

// reporterFrom builds the report sender from committed settings.
func (d *Daemon) reporterFrom(snap settings.Snapshot) (*tlsreport.Reporter, error) {
	host := d.cfg.SMTP.Hostname
	contact := snap.Get("TLSRPT.ContactInfo")
	if contact == "" {
		contact = "postmaster@" + host
	}
	ca, err := address.ParseAddress(contact)
	if err != nil {
		return nil, fmt.Errorf("TLSRPT.ContactInfo: %w", err)
	}
	r := &tlsreport.Reporter{
		DB:              d.DB,
		Resolver:        d.Deliv.Resolver,
		Queue:           d.Queue,
		HTTP:            d.httpClient,
		Recorder:        d.Recorder,
		Now:             d.now,
		Logger:          d.log.With("component", "tlsreport"),
		Org:             snap.Get("TLSRPT.OrganizationName"),
		Contact:         ca,
		MaxDestinations: snap.Int("TLSRPT.MaxDestinations"),
		OnlyFailures:    snap.Bool("TLSRPT.OnlyFailures"),
	}
	if r.Org == "" {
		r.Org = host
	}
	if sub := snap.Get("TLSRPT.Submitter"); sub != "" {
		if r.Submitter, err = address.ParseDomain(sub); err != nil {
			return nil, fmt.Errorf("TLSRPT.Submitter: %w", err)
		}
	}
	if from := snap.Get("TLSRPT.From"); from != "" {
		if r.From, err = address.ParseAddress(from); err != nil {
			return nil, fmt.Errorf("TLSRPT.From: %w", err)
		}
	}
	if keyFile := snap.Get("TLSRPT.DKIMKeyFile"); keyFile != "" {
		signer, err := loadSigner(keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLSRPT.DKIMKeyFile: %w", err)
		}
		sel := snap.Get("TLSRPT.DKIMSelector")
		if sel == "" {
			return nil, errors.New("TLSRPT.DKIMSelector: required with TLSRPT.DKIMKeyFile")
		}
		r.DKIM = &tlsreport.DKIMKey{Selector: sel, Signer: signer}
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return r, nil
}

func loadSigner(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	var key any
	switch {
	case strings.Contains(block.Type, "RSA"):
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, key)
	}
	return s, nil
}

// reportLoop runs the report sender with the settings in force, restarting it when they change.
type reportLoop struct {
	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	current *tlsreport.Reporter
}

func (d *Daemon) restartReports(ctx context.Context, snap settings.Snapshot) {
	d.reports.mu.Lock()
	defer d.reports.mu.Unlock()
	if d.reports.cancel != nil {
		d.reports.cancel()
		<-d.reports.done
		d.reports.cancel, d.reports.current = nil, nil
	}
	if !snap.TLSRPTEnabled() {
		return
	}
	r, err := d.reporterFrom(snap)
	if err != nil {
		d.log.Error("TLS reports disabled: bad settings", "err", err)
		return
	}
	// RFC 8460 Section 3: report mail MUST be DKIM-signed; unsigned reports may be discarded.
	d.warnings.set(d.log, "tlsrpt-unsigned", r.DKIM == nil,
		"tlsreport: no DKIM key configured: report mail is sent unsigned and may be discarded", "component", "tlsreport")
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.reports.cancel, d.reports.done, d.reports.current = cancel, done, r
	go func() {
		defer close(done)
		if err := r.Run(rctx); err != nil && rctx.Err() == nil {
			d.log.Error("TLS report sender stopped", "err", err)
		}
	}()
}

// Reporter returns the report sender in force, nil when TLS reporting is off.
func (d *Daemon) Reporter() *tlsreport.Reporter {
	d.reports.mu.Lock()
	defer d.reports.mu.Unlock()
	return d.reports.current
}

func (d *Daemon) stopReports() {
	d.reports.mu.Lock()
	defer d.reports.mu.Unlock()
	if d.reports.cancel != nil {
		d.reports.cancel()
		<-d.reports.done
		d.reports.cancel = nil
	}
}
