package daemon

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// dkimLookupBudget bounds the DNS lookup status makes for the DKIM record.
const dkimLookupBudget = 5 * time.Second

// Status reports the node's state.
func (d *Daemon) Status(ctx context.Context) (admin.Status, error) {
	var s admin.Status
	s.Node, s.SMTP, s.Admin, s.DataDir = d.cfg.Node, d.SMTPAddr(), d.AdminAddr(), d.cfg.Data.Dir
	if started := d.started.Load(); started != nil {
		s.Uptime = d.now().Sub(*started).Round(time.Second).String()
	}
	snap := d.settingsStore.Current()
	// A single node runs what is committed the moment the commit returns (settings.Store.Watch).
	s.Generation.Committed, s.Generation.Running = snap.Generation, d.runningGeneration()
	if d.pg != nil {
		// In a cluster, committed is the newest generation in the shared database, which may be ahead of
		// the running one for up to the propagation delay, or longer when this node cannot follow.
		s.Database = store.Redact(d.cfg.Data.Database)
		// Bounded: a database that does not answer (a partition rather than a refusal) must not hang status.
		nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		latest, err := d.settingsStore.Newest(nctx)
		cancel()
		if err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("shared settings database unreachable (%v): running generation %d stays in force", err, s.Generation.Running))
		} else {
			s.Generation.Committed = latest
		}
	}
	s.EnableMTASTS, s.EnableTLSRPT = snap.MTASTSEnabled(), snap.TLSRPTEnabled()
	rules, err := snap.DomainRules()
	if err != nil {
		return s, err
	}
	for _, dom := range slices.Sorted(maps.Keys(rules)) {
		if r := rules[dom]; r.Override {
			s.TLSOverrides = append(s.TLSOverrides, dom+": "+r.String())
		}
	}
	if s.Queue, err = d.Queue.Summary(ctx); err != nil {
		return s, err
	}
	s.Components = d.comps.list()
	if d.STS != nil {
		if err := d.STS.SharedErr(); err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("shared MTA-STS policy cache not answering (%v): this node reads and fetches policies without it, keeps them in its local copy and writes them to it at the next successful merge", err))
		}
	}
	if err := d.settingsStore.ReplicaError(); err != nil {
		s.Warnings = append(s.Warnings, fmt.Sprintf("the local copy of settings generation %d cannot be written (%v): a restart while the shared database is unreachable would run an older generation", s.Generation.Running, err))
	}
	if n := d.Recorder.Held(); n > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("TLS report results kept locally: %d batches of session results wait for the shared database, and are handed over when it answers", n))
	}
	s.Warnings = append(s.Warnings, d.hostnameWarnings()...)
	if d.spoolSyncWarning != "" {
		s.Warnings = append(s.Warnings, d.spoolSyncWarning)
	}
	if snap.Bool("Controller.EnableTLSRPT") {
		lctx, cancel := context.WithTimeout(ctx, dkimLookupBudget)
		rec, err := d.DKIM(lctx)
		cancel()
		if err != nil {
			s.Warnings = append(s.Warnings, "TLS reports cannot be DKIM-signed: "+err.Error())
		} else {
			s.TLSRPTDKIM = &rec
			if !rec.Published {
				s.Warnings = append(s.Warnings, fmt.Sprintf("TLS reports are DKIM-signed but DNS does not have the key (%s): publish %s. TXT \"%s\"", rec.Problem, rec.Name, rec.Value))
			}
		}
	}
	s.STSCache = map[string]int{}
	for m, n := range d.STS.Stats().Entries {
		s.STSCache[string(m)] = n
	}
	ps := d.settings.Load()
	s.EnableDANE = ps.EnableDANE
	daneOn := daneEnabled(ps)
	if st, ok := dnsx.StatsOf(d.Deliv.Resolver); ok {
		s.DNSSEC = &st
		if daneOn {
			s.Warnings = append(s.Warnings, daneWarnings(st)...)
		}
	}
	if w := d.stubValidatorWarning(); daneOn && w != "" {
		s.Warnings = append(s.Warnings, w)
	}
	return s, nil
}

// daneEnabled reports whether DANE applies to some destination: the global switch or a dane rule.
func daneEnabled(ps *tlspolicy.Settings) bool {
	on := ps.EnableDANE
	for _, r := range ps.Rules {
		on = on || r.Level == tlspolicy.LevelDANE || r.Level == tlspolicy.LevelDANEOnly
	}
	return on
}

// stubValidatorWarning says when the only resolvers trusted to validate are known forwarding stubs (Docker's
// 127.0.0.11): the default trust in loopback resolvers then trusts an AD bit set upstream, over a network
// path mxgate cannot vouch for (RFC 7672 Section 2.1.1). The default is kept: the stub may forward to a
// validating resolver the operator does trust, which only the operator knows.
func (d *Daemon) stubValidatorWarning() string {
	stubs := dnsx.StubValidatorsOf(d.Deliv.Resolver)
	if len(stubs) == 0 {
		return ""
	}
	names := make([]string, 0, len(stubs))
	for _, s := range stubs {
		names = append(names, fmt.Sprintf("%s (%s)", s.Server, s.Name))
	}
	return fmt.Sprintf("DANE is on, but the only resolver trusted to validate DNSSEC is a forwarding stub: %s passes on the AD bit of the resolver behind it, over a path that may not be trusted; run a validating resolver (unbound) in the container or on the host and list it in dns.servers, or set dns.validating to the resolvers you trust",
		strings.Join(names, ", "))
}

// hostnameWarnings says when neither host name is fully qualified: the default addresses (postmaster@, the
// TLS report contact) and the EHLO name are then useless to receivers.
func (d *Daemon) hostnameWarnings() []string {
	if strings.Contains(d.cfg.SMTP.Hostname, ".") || strings.Contains(d.cfg.Delivery.Hostname, ".") {
		return nil
	}
	return []string{fmt.Sprintf("no fully qualified host name: smtp.hostname %q and delivery.hostname %q; default addresses such as %s use it: set delivery.hostname to the gateway's DNS name",
		d.cfg.SMTP.Hostname, d.cfg.Delivery.Hostname, "postmaster@"+d.defaultMailHost())}
}

// daneWarnings says when DANE is on but cannot work: RFC 7672 Section 2.1.1 needs a validating resolver
// whose AD bit is trusted. Without it every TLSA record counts as insecure and DANE never applies.
func daneWarnings(st dnsx.DNSSECStats) []string {
	switch {
	case st.Trusted == 0 && st.UntrustedAD > 0:
		return []string{fmt.Sprintf("DANE is on, but the resolver that set the AD bit (%d answers) is not listed in dns.validating: its AD bit is ignored, so DANE never applies", st.UntrustedAD)}
	case st.Trusted > 0 && st.Authenticated == 0:
		return []string{fmt.Sprintf("DANE is on, but the resolver has set the AD bit on none of %d answers: it does not validate DNSSEC, so DANE never applies (run a validating resolver such as unbound on loopback)", st.Trusted)}
	}
	return nil
}

// ready checks that the store answers and the spool is writable.
func (d *Daemon) ready(ctx context.Context) error {
	if err := d.DB.PingContext(ctx); err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	f, err := os.CreateTemp(filepath.Join(d.cfg.Data.Dir, "spool"), ".ready-*")
	if err != nil {
		return fmt.Errorf("spool not writable: %w", err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
