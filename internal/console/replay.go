package console

import (
	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
)

// Window is how far back the dashboard reaches.
const Window = window

// Replay rebuilds the dashboard's counters and the per-domain view from stored history (queue.HistorySince
// over Window), so that they survive a restart. Call it once, before the daemon runs; events observed
// since are counted on top.
func (c *Console) Replay(h queue.History) {
	for _, t := range h.Accepted {
		c.timeline.accepted(t)
	}
	for _, a := range h.Attempts {
		ev := delivery.Event{
			Plan: a.Policy,
			Result: queue.Result{Outcome: a.Outcome, Code: a.Code, Enhanced: a.Enhanced, Text: a.Text,
				RemoteMTA: a.RemoteMTA, TLS: a.TLS, Policy: a.Policy, ResultType: a.ResultType},
		}
		// A stored address that no longer parses still counts on the dashboard; it has no domain to show.
		if rcpt, err := address.ParseAddress(a.Rcpt); err == nil {
			ev.Domain, ev.Result.Rcpt = rcpt.Host(), rcpt
		}
		c.timeline.observe(a.At, ev)
	}
}
