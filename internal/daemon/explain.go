package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
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
	e.Settings.EnableMTASTS = s.EnableMTASTS
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
		plan, err = d.Policy.For(ctx, tlspolicy.Request{Domain: dom, MXSecure: route.Secure})
		if err != nil {
			return admin.Explanation{}, err
		}
		for _, h := range route.Hosts {
			v := plan.AllowMX(h.Name)
			e.MX = append(e.MX, admin.MXCheck{Host: h.Name, Pref: h.Pref, Allowed: v.Proceed, Failure: v.Failure, Detail: v.Detail})
		}
	}
	e.Plan, e.Source, e.Level, e.Reason = plan.Name(), plan.Source, plan.Level, plan.Reason()
	e.STSMode, e.STSID = plan.STSMode, plan.STSID
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
