package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// Explanation is `mxgate policy explain`: the plan the TLS decision point would make for a domain now, and
// why, with the MX hosts it would allow.
type Explanation struct {
	Domain string `json:"domain"`
	// Route is the static route's hosts when one applies (MTA-STS is then not consulted).
	Route   []string      `json:"route,omitempty"`
	Plan    string        `json:"plan"`
	Source  string        `json:"source"`
	Level   string        `json:"level"`
	Reason  string        `json:"reason"`
	STSMode string        `json:"sts_mode,omitempty"`
	STSID   string        `json:"sts_id,omitempty"`
	STS     *STSCacheInfo `json:"sts_cache,omitempty"`
	// DiscoveryFailure is the MTA-STS discovery failure this attempt would report.
	DiscoveryFailure string    `json:"discovery_failure,omitempty"`
	MX               []MXCheck `json:"mx,omitempty"`
	MXError          string    `json:"mx_error,omitempty"`
	// DANE is the plan's DANE mode: off, on or required (dane-only).
	DANE     string `json:"dane"`
	Settings struct {
		EnableMTASTS bool   `json:"Sender.EnableMTASTS"`
		EnableDANE   bool   `json:"Sender.EnableDANE"`
		Rule         string `json:"rule,omitempty"`
	} `json:"settings"`
}

// STSCacheInfo is the cached policy behind a plan.
type STSCacheInfo struct {
	ID      string    `json:"id"`
	Mode    string    `json:"mode"`
	MaxAge  int64     `json:"max_age_seconds"`
	MX      []string  `json:"mx_patterns"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
}

// MXCheck says whether the plan lets delivery go to one MX host.
type MXCheck struct {
	Host    string `json:"host"`
	Pref    uint16 `json:"pref"`
	Allowed bool   `json:"allowed"`
	Failure string `json:"failure,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// DANE is what the host's TLSA lookup found, when the plan uses DANE.
	DANE *DANECheck `json:"dane,omitempty"`
}

// DANECheck is one MX host's TLSA records as delivery would find them (RFC 7672 Section 2.2).
type DANECheck struct {
	// Status is none, secure, insecure, bogus or failed.
	Status     string   `json:"status"`
	BaseDomain string   `json:"base_domain,omitempty"`
	TLSA       []string `json:"tlsa,omitempty"`
	// Usable: a secure RRset with a usable record: TLS must be authenticated by it (it takes precedence
	// over MTA-STS for this host).
	Usable bool `json:"usable"`
}

// Explain explains the TLS decision for domain. It does what a delivery would do (including an MTA-STS
// lookup, which may fetch a policy) but connects to no MX.
func (d *Daemon) Explain(ctx context.Context, domain string) (Explanation, error) {
	dom, err := address.ParseDomain(domain)
	if err != nil {
		return Explanation{}, err
	}
	e := Explanation{Domain: dom.String()}
	s := d.settings.Load()
	e.Settings.EnableMTASTS, e.Settings.EnableDANE = s.EnableMTASTS, s.EnableDANE
	if r, ok := s.Rules[dom.String()]; ok {
		e.Settings.Rule = r.String()
	}
	var plan *tlspolicy.Plan
	if r, ok := d.Deliv.MatchRoute(dom.String()); ok {
		e.Route = r.Hosts
		plan = d.Policy.ForRoute(dom, r.Level, false)
	} else {
		route, rerr := mx.Resolve(ctx, d.Deliv.Resolver, dom, mx.Options{LocalNames: d.Deliv.LocalNames})
		if rerr != nil {
			e.MXError = rerr.Error()
		}
		plan, err = d.Policy.For(ctx, tlspolicy.Request{Domain: dom, MXSecure: route.Secure, MXCNAMEs: route.CNAMEs})
		if err != nil {
			return Explanation{}, err
		}
		for _, h := range route.Hosts {
			v := plan.AllowMX(h.Name)
			c := MXCheck{Host: h.Name, Pref: h.Pref, Allowed: v.Proceed, Failure: string(v.Failure), Detail: v.Detail}
			if v.Proceed && plan.DANE() != tlspolicy.DANEOff {
				c.DANE, v = d.explainDANE(ctx, plan, h.Name)
				c.Allowed, c.Failure, c.Detail = v.Proceed, string(v.Failure), v.Detail
			}
			e.MX = append(e.MX, c)
		}
	}
	e.Plan, e.Source, e.Level, e.Reason = plan.Name(), string(plan.Source), string(plan.Level), plan.Reason()
	e.STSMode, e.STSID = string(plan.STSMode), plan.STSID
	e.DANE = string(plan.DANE())
	if ft, detail := plan.DiscoveryFailure(); ft != "" {
		e.DiscoveryFailure = fmt.Sprintf("%s: %s", ft, detail)
	}
	if entry, err := d.STS.Show(ctx, dom); err == nil {
		e.STS = &STSCacheInfo{ID: entry.ID, Mode: string(entry.Mode), MaxAge: int64(entry.MaxAge / time.Second), MX: entry.MX, Fetched: entry.Fetched, Expires: entry.Expires}
	} else if !errors.Is(err, mtastscache.ErrNotCached) {
		return Explanation{}, err
	}
	return e, nil
}

// explainDANE looks up host's addresses and TLSA records as delivery does and gives them to the plan.
func (d *Daemon) explainDANE(ctx context.Context, plan *tlspolicy.Plan, host string) (*DANECheck, tlspolicy.Verdict) {
	_, res, err := mx.AddressesResult(ctx, d.Deliv.Resolver, host)
	if err != nil {
		return &DANECheck{Status: "unknown"}, tlspolicy.Verdict{Detail: "address lookup: " + err.Error()}
	}
	var set dane.TLSASet
	if plan.LookupTLSA() {
		port := d.Deliv.Port
		if port == 0 {
			port = 25
		}
		set = dane.Lookup(ctx, d.Deliv.Resolver, dane.LookupRequest{Host: host, Port: port, Addr: res})
	}
	v := plan.SetDANE(host, set)
	c := &DANECheck{Status: string(set.Status), BaseDomain: set.BaseDomain, TLSA: dane.Strings(set.RRset), Usable: set.Usable()}
	if c.Status == "" {
		c.Status = string(dane.StatusNone)
	}
	return c, v
}
