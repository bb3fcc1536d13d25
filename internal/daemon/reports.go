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
	"github.com/mxgate/mxgate/internal/admin"
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

// reporterFrom builds the report sender from a settings generation. Its errors are settings.KeyErrors naming
// the setting at fault; the settings store runs it as the tlsrpt component's check before every commit.
func (d *Daemon) reporterFrom(snap settings.Snapshot) (*tlsreport.Reporter, error) {
	host := d.defaultMailHost()
	bad := func(key string, err error) error { return &settings.KeyError{Key: key, Err: err} }
	ca, err := address.ParseAddress(d.contact(snap))
	if err != nil {
		return nil, bad("TLSRPT.ContactInfo", err)
	}
	r := &tlsreport.Reporter{
		Store:           d.reportStore,
		DB:              d.DB,
		Resolver:        d.out.Resolver,
		Queue:           d.Queue,
		HTTP:            d.httpClient,
		Recorder:        d.Recorder,
		Now:             d.now,
		Logger:          d.log.With("component", "tlsreport"),
		Org:             snap.Get("TLSRPT.OrganizationName"),
		Contact:         ca,
		MaxDestinations: snap.Int("TLSRPT.MaxDestinations"),
		OnlyFailures:    snap.Bool("TLSRPT.OnlyFailures"),
		RetryInterval:   d.cfg.TLSRPT.RetryInterval.Duration(),
		SendLease:       d.cfg.TLSRPT.SendLease.Duration(),
	}
	if d.reportStore != nil {
		// Cluster mode: the deliveries started before this node joined are finished from its own database.
		r.Local = tlsreport.NewSQLiteStore(d.DB)
	}
	if r.Org == "" {
		r.Org = host
	}
	if sub := snap.Get("TLSRPT.Submitter"); sub != "" {
		if r.Submitter, err = address.ParseDomain(sub); err != nil {
			return nil, bad("TLSRPT.Submitter", err)
		}
	}
	if from := snap.Get("TLSRPT.From"); from != "" {
		if r.From, err = address.ParseAddress(from); err != nil {
			return nil, bad("TLSRPT.From", err)
		}
	}
	signer, sel, _, err := d.dkimSigning(snap)
	if err != nil {
		return nil, err
	}
	r.DKIM = &tlsreport.DKIMKey{Selector: sel, Signer: signer}
	if err := r.Check(); err != nil {
		fes := fieldErrors(err)
		if len(fes) == 0 {
			return nil, err
		}
		var errs []error
		for _, fe := range fes {
			if key, ok := reporterFieldKeys[fe.Field]; ok {
				errs = append(errs, bad(key, fe.Err))
			} else {
				errs = append(errs, fe)
			}
		}
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// reporterFieldKeys maps the report sender's fields to the settings that fill them.
var reporterFieldKeys = map[string]string{
	"Contact":   "TLSRPT.ContactInfo",
	"Submitter": "TLSRPT.Submitter",
	"From":      "TLSRPT.From",
	"DKIM":      "TLSRPT.DKIMSelector",
}

// fieldErrors returns the report sender's field errors in err's tree.
func fieldErrors(err error) []*tlsreport.FieldError {
	switch e := err.(type) {
	case nil:
		return nil
	case *tlsreport.FieldError:
		return []*tlsreport.FieldError{e}
	case interface{ Unwrap() []error }:
		var out []*tlsreport.FieldError
		for _, x := range e.Unwrap() {
			out = append(out, fieldErrors(x)...)
		}
		return out
	case interface{ Unwrap() error }:
		return fieldErrors(e.Unwrap())
	}
	return nil
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
		d.comps.set(componentTLSRPT, admin.ComponentOff, "Controller.EnableTLSRPT is false")
		return
	}
	r, err := d.reporterFrom(snap)
	if err != nil {
		// Commits are checked with reporterFrom; this is a generation that was in force before, or a key
		// file that changed on disk since.
		d.comps.set(componentTLSRPT, admin.ComponentFailed, err.Error())
		d.log.Error("component failed", "component", componentTLSRPT, "generation", snap.Generation, "err", err)
		return
	}
	d.comps.set(componentTLSRPT, admin.ComponentRunning, "")
	// RFC 8460 Section 3: report mail MUST be DKIM-signed; unsigned reports may be discarded.
	d.warnings.set(d.log, "tlsrpt-unsigned", r.DKIM == nil,
		"tlsreport: no DKIM key configured: report mail is sent unsigned and may be discarded", "component", "tlsreport")
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.reports.cancel, d.reports.done, d.reports.current = cancel, done, r
	go func() {
		defer close(done)
		if err := r.Run(rctx); err != nil && rctx.Err() == nil {
			d.comps.set(componentTLSRPT, admin.ComponentFailed, err.Error())
			d.log.Error("component failed", "component", componentTLSRPT, "err", err)
		}
	}()
}

// Reporter returns the report sender in force, nil when TLS reporting is off.
func (d *Daemon) Reporter() *tlsreport.Reporter {
	d.reports.mu.Lock()
	defer d.reports.mu.Unlock()
	return d.reports.current
}

// reportsAPI is Reporter for the admin API and the console: nil (not a nil *tlsreport.Reporter) while TLS
// reporting is off.
func (d *Daemon) reportsAPI() admin.ReportsAPI {
	if r := d.Reporter(); r != nil {
		return r
	}
	return nil
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
