package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// Explain explains the TLS decision for domain. It does what a delivery would do (including an MTA-STS
// lookup, which may fetch a policy) but connects to no MX.
func (d *Daemon) Explain(ctx context.Context, dom address.Domain) (admin.Explanation, error) {
	if dom.IsZero() {
		return admin.Explanation{}, fmt.Errorf("explain: %w: empty domain", address.ErrSyntax)
	}
	var err error
	e := admin.Explanation{Domain: dom.String()}
	s := d.settings.Load()
	e.Settings.EnableMTASTS, e.Settings.EnableDANE = s.EnableMTASTS, s.EnableDANE
	if r, ok := s.Rules[dom.String()]; ok {
		e.Settings.Rule = r.String()
	}
	var plan *tlspolicy.Plan
	if r, ok := d.Deliv.MatchRoute(dom.String()); ok {
		e.Route = r.Hosts
		plan = d.Policy.ForRoute(tlspolicy.Request{Domain: dom}, r.Level)
	} else {
		route, rerr := mx.Resolve(ctx, d.Deliv.Resolver, dom, mx.Options{LocalNames: d.Deliv.LocalNames})
		if rerr != nil {
			e.MXError = rerr.Error()
		}
		plan, err = d.Policy.For(ctx, tlspolicy.Request{Domain: dom, MXSecure: route.Secure, MXCNAMEs: route.CNAMEs})
		if err != nil {
			return admin.Explanation{}, err
		}
		for _, h := range route.Hosts {
			v := plan.AllowMX(h.Name)
			c := admin.MXCheck{Host: h.Name, Pref: h.Pref, Allowed: v.Proceed, Failure: v.Failure, Detail: v.Detail}
			if v.Proceed && plan.DANE() != tlspolicy.DANEOff {
				c.DANE, v = d.explainDANE(ctx, plan, h.Name)
				c.Allowed, c.Failure, c.Detail = v.Proceed, v.Failure, v.Detail
			}
			e.MX = append(e.MX, c)
		}
	}
	e.Plan, e.Source, e.Level, e.Reason = plan.Name(), plan.Source, plan.Level, plan.Reason()
	e.STSMode, e.STSID = plan.STSMode, plan.STSID
	e.DANE = plan.DANE()
	if ft, detail := plan.DiscoveryFailure(); ft != "" {
		e.DiscoveryFailure = fmt.Sprintf("%s: %s", ft, detail)
	}
	if entry, err := d.STS.Show(ctx, dom); err == nil {
		e.STS = &admin.STSCacheInfo{ID: entry.ID, Mode: entry.Mode, MaxAge: int64(entry.MaxAge / time.Second), MX: entry.MX, Fetched: entry.Fetched, Expires: entry.Expires}
	} else if !errors.Is(err, mtastscache.ErrNotCached) {
		return admin.Explanation{}, err
	}
	return e, nil
}

// explainDANE looks up host's addresses and TLSA records as delivery does and gives them to the plan.
func (d *Daemon) explainDANE(ctx context.Context, plan *tlspolicy.Plan, host string) (*admin.DANECheck, tlspolicy.Verdict) {
	_, res, err := mx.AddressesResult(ctx, d.Deliv.Resolver, host)
	if err != nil {
		return &admin.DANECheck{Status: "unknown"}, tlspolicy.Verdict{Detail: "address lookup: " + err.Error()}
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
	c := &admin.DANECheck{Status: set.Status, BaseDomain: set.BaseDomain, TLSA: dane.Strings(set.RRset), Usable: set.Usable()}
	if c.Status == "" {
		c.Status = dane.StatusNone
	}
	return c, v
}
