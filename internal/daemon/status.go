package daemon

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// Status is `mxgate status`.
type Status struct {
	Node       string `json:"node"`
	SMTP       string `json:"smtp"`
	Admin      string `json:"admin"`
	DataDir    string `json:"data_dir"`
	Uptime     string `json:"uptime"`
	Generation struct {
		Committed int `json:"committed"`
		Running   int `json:"running"`
	} `json:"settings_generation"`
	EnableMTASTS bool `json:"Sender.EnableMTASTS"`
	EnableDANE   bool `json:"Sender.EnableDANE"`
	EnableTLSRPT bool `json:"Controller.EnableTLSRPT"`
	// TLSOverrides lists the per-domain rules that replace the domain's published policies ("domain: rule"):
	// deliberate downgrades an administrator should not forget.
	TLSOverrides []string       `json:"tls_overrides,omitempty"`
	Queue        queue.Summary  `json:"queue"`
	STSCache     map[string]int `json:"mtasts_cache_entries"`
	// DNSSEC counts the resolver's answers by what they said about DNSSEC (since start).
	DNSSEC *dnsx.DNSSECStats `json:"dnssec,omitempty"`
	// Warnings are conditions an administrator should fix.
	Warnings []string `json:"warnings,omitempty"`
}

// Status reports the node's state.
func (d *Daemon) Status(ctx context.Context) (Status, error) {
	var s Status
	s.Node, s.SMTP, s.Admin, s.DataDir = d.cfg.Node, d.SMTPAddr(), d.AdminAddr(), d.cfg.Data.Dir
	if !d.started.IsZero() {
		s.Uptime = d.now().Sub(d.started).Round(time.Second).String()
	}
	snap := d.settingsStore.Current()
	// A single node runs what is committed the moment the commit returns (settings.Store.Watch).
	s.Generation.Committed, s.Generation.Running = snap.Generation, d.runningGeneration()
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
	s.STSCache = map[string]int{}
	for m, n := range d.STS.Stats().Entries {
		s.STSCache[string(m)] = n
	}
	ps := d.settings.Load()
	s.EnableDANE = ps.EnableDANE
	daneOn := ps.EnableDANE
	for _, r := range ps.Rules {
		daneOn = daneOn || r.Level == tlspolicy.LevelDANE || r.Level == tlspolicy.LevelDANEOnly
	}
	if st, ok := dnsx.StatsOf(d.Deliv.Resolver); ok {
		s.DNSSEC = &st
		if daneOn {
			s.Warnings = append(s.Warnings, daneWarnings(st)...)
		}
	}
	return s, nil
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
