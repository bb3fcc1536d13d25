package console

import (
	"context"
	"time"
)

// HourCounters are one node's dashboard counts of one clock hour (UTC): messages accepted, delivery
// attempts and recipients delivered by TLS class (none, unverified, verified, no session), recipients
// deferred and failed, and deferrals by RFC 8460 result type ("" for deferrals that are not TLS or policy
// failures).
type HourCounters struct {
	Hour      time.Time      `json:"hour"`
	Accepted  int            `json:"accepted"`
	Attempts  [4]int         `json:"attempts"`
	Delivered [4]int         `json:"delivered"`
	Deferred  int            `json:"deferred"`
	Failed    int            `json:"failed"`
	Deferrals map[string]int `json:"deferrals,omitempty"`
}

// NodeCounters are the hours one node published, and when it last did.
type NodeCounters struct {
	Node    string
	Updated time.Time
	Hours   []HourCounters
}

// CounterStore keeps the dashboard counters of every node of a cluster, so that each node's dashboard
// shows the cluster's sums (PostgresCounters).
type CounterStore interface {
	// Publish replaces node's counters of the hours given (each node writes only its own rows).
	Publish(ctx context.Context, node string, now time.Time, hours []HourCounters) error
	// Read returns every node's counters of the hours from since on.
	Read(ctx context.Context, since time.Time) ([]NodeCounters, error)
}

// CountersStaleAfter is how long after its last write another node's figures are flagged stale on the
// dashboard (nodes write every 30 seconds).
const CountersStaleAfter = 2 * time.Minute

// clusterReadTimeout bounds the dashboard's read of the shared counters.
const clusterReadTimeout = 2 * time.Second

// HourCounters returns this node's counters by clock hour over the window ending at now, oldest first. The
// current hour is always in it, even with nothing counted, so that a quiet node is seen to write.
func (c *Console) HourCounters(now time.Time) []HourCounters { return c.timeline.hourly(now) }

// hourly sums the minute buckets by clock hour. The window reaches into the clock hour before the 24th,
// which is returned too.
func (tl *timeline) hourly(now time.Time) []HourCounters {
	nowMin := now.Unix() / 60
	first := nowMin - int64(nBuckets) + 1
	firstHour := first / 60
	hours := make([]HourCounters, nowMin/60-firstHour+1)
	for i := range hours {
		hours[i].Hour = time.Unix((firstHour+int64(i))*3600, 0).UTC()
	}
	tl.mu.Lock()
	for i := range tl.buckets {
		b := &tl.buckets[i]
		if b.minute < first || b.minute > nowMin {
			continue
		}
		h := &hours[b.minute/60-firstHour]
		h.Accepted += b.accepted
		h.Deferred += b.deferred
		h.Failed += b.failed
		for c := range numClasses {
			h.Attempts[c] += b.attempts[c]
			h.Delivered[c] += b.delivered[c]
		}
		for rt, n := range b.deferrals {
			if h.Deferrals == nil {
				h.Deferrals = map[string]int{}
			}
			h.Deferrals[rt] += n
		}
	}
	tl.mu.Unlock()
	out := hours[:0]
	for i, h := range hours {
		if i == len(hours)-1 || h.Accepted+h.Deferred+h.Failed+sum(h.Attempts) > 0 {
			out = append(out, h)
		}
	}
	return out
}

func sum(a [numClasses]int) int {
	n := 0
	for _, v := range a {
		n += v
	}
	return n
}

// statsOfHours sums hours by clock hour: the current hour and the 23 before it.
func statsOfHours(now time.Time, hours []HourCounters) stats {
	s := stats{Deferrals: map[string]int{}, Hours: make([]hourStats, 24)}
	nowHour := now.Unix() / 3600
	for i := range s.Hours {
		s.Hours[i].Start = time.Unix((nowHour-23+int64(i))*3600, 0).UTC()
	}
	for _, h := range hours {
		slot := int(h.Hour.Unix()/3600 - (nowHour - 23))
		if slot < 0 || slot > 23 {
			continue
		}
		s.Accepted += h.Accepted
		s.Deferred += h.Deferred
		s.Failed += h.Failed
		for c := range numClasses {
			s.Attempts[c] += h.Attempts[c]
			s.Delivered[c] += h.Delivered[c]
			s.Hours[slot].Attempts[c] += h.Attempts[c]
		}
		for rt, n := range h.Deferrals {
			s.Deferrals[rt] += n
		}
	}
	return s
}

// nodeFigures says, for the dashboard, whose figures the cluster's sums hold.
type nodeFigures struct {
	// Nodes is the number of nodes whose figures are summed, this one included.
	Nodes int
	// Stale are the other nodes whose last write is older than CountersStaleAfter; Missing those in the
	// node registry that wrote no figures of the last 24 hours.
	Stale   []staleNode
	Missing []string
	// Err, when set, is why the cluster's figures could not be read: the dashboard then shows this node's.
	Err string
}

type staleNode struct {
	Node    string
	Updated time.Time
}

// clusterStats returns the cluster's sums over the 24 clock hours ending at now: this node's live counters
// and the other nodes' last published ones.
func (c *Console) clusterStats(ctx context.Context, now time.Time) (stats, *nodeFigures) {
	own := c.timeline.hourly(now)
	nf := &nodeFigures{Nodes: 1}
	ctx, cancel := context.WithTimeout(ctx, clusterReadTimeout)
	defer cancel()
	since := time.Unix((now.Unix()/3600-23)*3600, 0)
	rows, err := c.opts.ClusterCounters.Read(ctx, since)
	if err != nil {
		c.log.Warn("console: cannot read the cluster's dashboard counters; showing this node's", "err", err)
		nf.Err = err.Error()
		return statsOfHours(now, own), nf
	}
	all := own
	seen := map[string]bool{c.opts.Node: true}
	for _, r := range rows {
		if r.Node == c.opts.Node {
			continue
		}
		seen[r.Node] = true
		nf.Nodes++
		all = append(all, r.Hours...)
		if now.Sub(r.Updated) > CountersStaleAfter {
			nf.Stale = append(nf.Stale, staleNode{r.Node, r.Updated})
		}
	}
	if c.opts.Cluster != nil {
		if list, err := c.opts.Cluster.Nodes(ctx); err == nil {
			for _, n := range list.Nodes {
				if !seen[n.Name] && !n.Self {
					nf.Missing = append(nf.Missing, n.Name)
				}
			}
		}
	}
	return statsOfHours(now, all), nf
}
