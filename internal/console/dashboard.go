package console

import (
	"cmp"
	"github.com/mxgate/mxgate/internal/admin"
	"net/http"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/internal/queue"
)

type countRow struct {
	Name  string
	Count int
}

type dashboardData struct {
	Stats                   stats
	Out, Attempts           int
	TLSShare, VerifiedShare string
	Deferrals               []countRow
	Summary                 queue.Summary
	QueuedRcpts             int
	SummaryErr              string
	Failing                 []domainState
	Chart                   chart
	Generation              int
	Components              []admin.Component
	// Figures, in cluster mode, says whose counters the figures sum; nil on a single node.
	Figures *nodeFigures
}

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	now := c.now()
	st := c.timeline.stats(now)
	var figures *nodeFigures
	if c.opts.ClusterCounters != nil {
		st, figures = c.clusterStats(r.Context(), now)
	}
	d := dashboardData{Stats: st, Figures: figures, Chart: tlsChart(st.Hours), Generation: c.opts.Settings.Current().Generation, Components: c.components()}
	for i := range numClasses {
		d.Out += st.Delivered[i]
		d.Attempts += st.Attempts[i]
	}
	d.TLSShare = pct(st.Delivered[classUnverified]+st.Delivered[classVerified], d.Out)
	d.VerifiedShare = pct(st.Delivered[classVerified], d.Out)
	for rt, n := range st.Deferrals {
		if rt == "" {
			rt = "(not a TLS or policy failure)"
		}
		d.Deferrals = append(d.Deferrals, countRow{rt, n})
	}
	slices.SortFunc(d.Deferrals, func(a, b countRow) int { return cmp.Or(b.Count-a.Count, strings.Compare(a.Name, b.Name)) })
	sum, err := c.opts.Queue.Summary(r.Context())
	if err != nil {
		c.log.Error("console: queue summary", "err", err)
		d.SummaryErr = err.Error()
	}
	d.Summary, d.QueuedRcpts = sum, sum.RecipientsByState["queued"]
	for _, f := range c.timeline.failingEnforce() {
		if now.Sub(f.LastSeen) < window {
			d.Failing = append(d.Failing, f)
		}
	}
	c.render(w, r, s, http.StatusOK, "dashboard", "Dashboard", d)
}
