package console

import (
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/queue"
)

// TestReplayRebuildsDashboard: the counters and the per-domain view come back from stored history.
func TestReplayRebuildsDashboard(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	c := &Console{timeline: newTimeline(10)}
	c.Replay(queue.History{
		Accepted: []time.Time{t0, t0.Add(time.Minute)},
		Attempts: []queue.Attempt{
			{Rcpt: "a@example.org", At: t0.Add(time.Minute), Outcome: queue.Deferred, TLS: "", ResultType: "certificate-expired", Policy: "mta-sts enforce"},
			{Rcpt: "a@example.org", At: t0.Add(time.Hour), Outcome: queue.Delivered, TLS: "verified TLS 1.3", Policy: "mta-sts enforce", RemoteMTA: "mx.example.org"},
			{Rcpt: "b@example.net", At: t0.Add(time.Hour), Outcome: queue.Failed, TLS: "none", Code: 550},
		},
	})
	s := c.timeline.stats(t0.Add(2 * time.Hour))
	if s.Accepted != 2 || s.Deferred != 1 || s.Failed != 1 || s.Delivered != [numClasses]int{0, 0, 1, 0} || s.Deferrals["certificate-expired"] != 1 {
		t.Errorf("stats after replay: %+v", s)
	}
	d, ok := c.timeline.domain("example.org")
	if !ok || d.Outcome != "delivered" || d.MX != "mx.example.org" || d.Plan != "mta-sts enforce" || !d.FailingSince.IsZero() {
		t.Errorf("example.org after replay: %+v, %v", d, ok)
	}
}
