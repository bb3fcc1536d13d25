package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtastscache"
)

// Explain is `mxgate policy explain`: delivery's own explanation of req (its plan comes from the function
// delivery uses), with the cached MTA-STS policy and the settings in force.
func (d *Daemon) Explain(ctx context.Context, req delivery.PlanRequest) (delivery.Explanation, error) {
	if req.Domain.IsZero() {
		return delivery.Explanation{}, fmt.Errorf("%w: no domain to explain", address.ErrSyntax)
	}
	e, err := d.Deliv.Explain(ctx, req)
	if err != nil {
		return e, err
	}
	s := d.settings.Load()
	e.Settings.EnableMTASTS, e.Settings.EnableDANE = s.EnableMTASTS, s.EnableDANE
	if dom, ok := req.Domain.Domain(); ok {
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
