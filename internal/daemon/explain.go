package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtastscache"
)

// Explain is `mxgate policy explain`: delivery's own explanation of req (its plan comes from the function
// delivery uses), with the cached MTA-STS policy and the settings in force.
func (d *Daemon) Explain(ctx context.Context, req delivery.PlanRequest) (delivery.Explanation, error) {
	if !isAddressLiteral(req.Domain) {
		dom, err := address.ParseDomain(req.Domain)
		if err != nil {
			return delivery.Explanation{}, err
		}
		req.Domain = dom.String()
	}
	e, err := d.Deliv.Explain(ctx, req)
	if err != nil {
		return e, err
	}
	s := d.settings.Load()
	e.Settings.EnableMTASTS, e.Settings.EnableDANE = s.EnableMTASTS, s.EnableDANE
	if dom, err := address.ParseDomain(req.Domain); err == nil {
		entry, err := d.STS.Show(ctx, dom)
		switch {
		case err == nil:
			e.STS = &delivery.STSCacheInfo{ID: entry.ID, Mode: entry.Mode, MaxAge: int64(entry.MaxAge / time.Second), MX: entry.MX, Fetched: entry.Fetched, Expires: entry.Expires}
		case !errors.Is(err, mtastscache.ErrNotCached):
			return e, err
		}
	}
	return e, nil
}

func isAddressLiteral(s string) bool { return len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' }
