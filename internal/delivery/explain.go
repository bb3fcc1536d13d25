package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// Explanation is the plan delivery would follow for a destination now, and why, with the hosts it would
// allow. It is the one explanation type: `mxgate policy explain`, the admin API (GET /api/v1/policy/{domain})
// and the console's domain page all carry it.
type Explanation struct {
	Domain string `json:"domain"`
	// RequireTLS: the explanation is for a message received with REQUIRETLS.
	RequireTLS bool `json:"requiretls,omitempty"`
	// Undeliverable is the outcome every recipient would get before any host is tried (a DNS failure, a
	// failed MTA-STS discovery, a domain that does not exist); the plan fields are then empty.
	Undeliverable string `json:"undeliverable,omitempty"`
	// Route is the static route's hosts when one applies (MTA-STS is then not consulted).
	Route  []string         `json:"route,omitempty"`
	Plan   string           `json:"plan,omitempty"`
	Source tlspolicy.Source `json:"source,omitempty"`
	Level  tlspolicy.Level  `json:"level,omitempty"`
	Reason string           `json:"reason,omitempty"`
	// Override: the domain's rule replaces its published policy (a deliberate downgrade).
	Override bool          `json:"override,omitempty"`
	STSMode  mtasts.Mode   `json:"sts_mode,omitempty"`
	STSID    string        `json:"sts_id,omitempty"`
	STS      *STSCacheInfo `json:"sts_cache,omitempty"`
	// DiscoveryFailure is the MTA-STS discovery failure this attempt would report.
	DiscoveryFailure string    `json:"discovery_failure,omitempty"`
	MX               []MXCheck `json:"mx,omitempty"`
	MXSecure         bool      `json:"mx_dnssec,omitempty"`
	// DANE is the plan's DANE mode: off, on or required (dane-only).
	DANE     tlspolicy.DANEMode `json:"dane,omitempty"`
	Settings ExplainedBy        `json:"settings"`
}

// ExplainedBy is the part of the committed settings the plan depends on.
type ExplainedBy struct {
	EnableMTASTS bool `json:"Sender.EnableMTASTS"`
	EnableDANE   bool `json:"Sender.EnableDANE"`
	// Rule is the domain's TLS rule in its text form ("required-verify", "opportunistic override").
	Rule string `json:"rule,omitempty"`
}

// STSCacheInfo is the cached MTA-STS policy behind a plan.
type STSCacheInfo struct {
	ID      string      `json:"id"`
	Mode    mtasts.Mode `json:"mode"`
	MaxAge  int64       `json:"max_age_seconds"`
	MX      []string    `json:"mx_patterns"`
	Fetched time.Time   `json:"fetched"`
	Expires time.Time   `json:"expires"`
}

// MXCheck says whether the plan lets delivery go to one host.
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
	Status     dane.Status `json:"status"`
	BaseDomain string      `json:"base_domain,omitempty"`
	TLSA       []string    `json:"tlsa,omitempty"`
	// Usable: a secure RRset with a usable record: TLS must be authenticated by it (it takes precedence
	// over MTA-STS for this host).
	Usable bool `json:"usable"`
}

// Explain explains what delivery would do for req now, with the plan from Destination (so it cannot
// disagree with delivery). It may look up and fetch an MTA-STS policy, but connects to no host. The error
// is for a cancelled ctx only; what delivery would refuse is in the Explanation.
func (d *Deliverer) Explain(ctx context.Context, req PlanRequest) (Explanation, error) {
	e := Explanation{Domain: req.Domain.String(), RequireTLS: req.RequireTLS}
	dest, err := d.Destination(ctx, req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return e, fmt.Errorf("explain %s: %w", req.Domain, cerr)
		}
		var u *UndeliverableError
		if !errors.As(err, &u) {
			return e, err
		}
		e.Undeliverable = u.Error()
		return e, nil
	}
	plan := dest.Plan
	if dest.Route != nil {
		e.Route = dest.Route.Hosts
	}
	e.Plan, e.Source, e.Level, e.Reason = plan.Name(), plan.Source, plan.Level, plan.Reason()
	e.Override, e.STSMode, e.STSID, e.MXSecure = plan.Override, plan.STSMode, plan.STSID, dest.MXSecure
	if plan.Rule != nil {
		e.Settings.Rule = plan.Rule.String()
	}
	if ft, detail := plan.DiscoveryFailure(); ft != "" {
		e.DiscoveryFailure = fmt.Sprintf("%s: %s", ft, detail)
	}
	e.DANE = plan.DANE()
	for _, h := range dest.Hosts {
		v := plan.AllowMX(h.Name)
		c := MXCheck{Host: h.Name, Pref: h.Pref, Allowed: v.Proceed, Failure: string(v.Failure), Detail: v.Detail}
		if v.Proceed && plan.DANE() != tlspolicy.DANEOff {
			c.DANE, v = d.explainDANE(ctx, plan, h)
			c.Allowed, c.Failure, c.Detail = v.Proceed, string(v.Failure), v.Detail
		}
		e.MX = append(e.MX, c)
	}
	return e, nil
}

// explainDANE looks up host's addresses and TLSA records as delivery does and gives them to the plan.
func (d *Deliverer) explainDANE(ctx context.Context, plan *tlspolicy.Plan, h Host) (*DANECheck, tlspolicy.Verdict) {
	_, res, err := mx.AddressesResult(ctx, d.Resolver, h.Name)
	if err != nil {
		return &DANECheck{Status: dane.StatusFailed}, tlspolicy.Verdict{Detail: "address lookup: " + err.Error()}
	}
	var set dane.TLSASet
	if plan.LookupTLSA() {
		set = dane.Lookup(ctx, d.Resolver, dane.LookupRequest{Host: h.Name, Port: h.Port, Addr: res})
	}
	v := plan.SetDANE(h.Name, set)
	c := &DANECheck{Status: set.Status, BaseDomain: set.BaseDomain, TLSA: dane.Strings(set.RRset), Usable: set.Usable()}
	if c.Status == "" {
		c.Status = dane.StatusNone
	}
	return c, v
}
