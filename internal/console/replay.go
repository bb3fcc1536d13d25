package console

import (
	"strings"

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
		_, dom, _ := strings.Cut(a.Rcpt, "@")
		c.timeline.observe(a.At, delivery.Event{
			Domain: dom,
			Plan:   a.Policy,
			Result: queue.Result{Rcpt: a.Rcpt, Outcome: a.Outcome, Code: a.Code, Enhanced: a.Enhanced, Text: a.Text,
				RemoteMTA: a.RemoteMTA, TLS: a.TLS, Policy: a.Policy, ResultType: a.ResultType},
		})
	}
}
