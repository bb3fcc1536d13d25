package tlsreport

import (
	"context"
	"encoding/binary"
	"time"
)

// Run sends each day's reports after 00:00 UTC plus a random delay of up to MaxJitter (RFC 8460 Section 4.1
// suggests randomising the send time so that receivers are not flooded at midnight), and retries due
// deliveries every RetryInterval, until ctx is done. Errors are logged; Run returns ctx's error.
func (r *Reporter) Run(ctx context.Context) error {
	c, err := r.config()
	if err != nil {
		return err
	}
	log := r.log()
	// A shared store that does not answer at start delays the reports; it does not stop them.
	for {
		if _, err := r.init(ctx); err == nil {
			break
		} else {
			log.Error("tlsreport: the report store is unreachable; retrying", "err", err)
		}
		t := time.NewTimer(min(c.retryInt, time.Minute))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	var (
		handled   time.Time // the last day whose reports were sent without a temporary failure
		jitterDay time.Time
		due       time.Time
	)
	for {
		now := r.now()
		today := Day(now)
		if !jitterDay.Equal(today) {
			jitterDay, due = today, today.Add(r.jitter(c.jitter))
		}
		prev := today.AddDate(0, 0, -1)
		if !handled.Equal(prev) && !now.Before(due) {
			res, err := r.SendDay(ctx, prev)
			if err != nil {
				log.Error("tlsreport: sending reports", "day", prev.Format(dayFormat), "err", err)
			} else {
				retry := false
				for _, d := range res.Domains {
					retry = retry || d.Status == "error"
				}
				if !retry {
					handled = prev
				}
				if err := r.Prune(ctx, now.Add(-c.retain)); err != nil {
					log.Error("tlsreport: pruning old report data", "err", err)
				}
			}
		}
		if _, err := r.RetryDue(ctx); err != nil {
			log.Error("tlsreport: retrying report deliveries", "err", err)
		}
		wait := c.retryInt
		if !handled.Equal(prev) && due.After(now) && due.Sub(now) < wait {
			wait = due.Sub(now)
		} else if next := today.AddDate(0, 0, 1); next.Sub(now) < wait {
			wait = next.Sub(now)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// jitter returns a random delay in [0, max).
func (r *Reporter) jitter(max time.Duration) time.Duration {
	b, err := r.randomBytes(8)
	if err != nil || max <= 0 {
		return 0
	}
	return time.Duration(binary.BigEndian.Uint64(b) % uint64(max))
}
