package daemon_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestClusterTrackingAcrossNodes: a message delivered by node A is found by message tracking on node B,
// with its node. While PostgreSQL is stopped, node A delivers on, keeps the next finished message in its
// outbox (component tracking failed, naming it) and still finds it itself, saying the search is partial;
// when the server is back, node B finds that message too.
func TestClusterTrackingAcrossNodes(t *testing.T) {
	srv := storetest.StartServer(t)
	n := newSimNet(t)
	if _, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10}); err != nil {
		t.Fatal(err)
	}
	node := func(name string) *config.Config {
		cfg := n.GatewayConfig(filepath.Join(t.TempDir(), "data"))
		cfg.Queue.RetryInitial = config.Duration(time.Hour)
		cfg.Data.Database, cfg.Node = srv.DSN, name
		return cfg
	}
	a, _ := runNode(t, n, node("a.example.net"))
	b, _ := runNode(t, n, node("b.example.net"))
	send := func(rcpt string) {
		t.Helper()
		c, err := smtp.Dial(a.smtp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := sendOn(c, rcpt, rcpt); err != nil {
			t.Fatalf("intake: %v", err)
		}
		if ev := a.nextEvent(t, "example.com"); ev.Result.Outcome != queue.Delivered {
			t.Fatalf("delivery to %s: %+v", rcpt, ev.Result)
		}
	}
	// traced asks g's admin API for the messages to rcpt.
	traced := func(g *gw, rcpt string) (int, http.Header, []admin.Traced) {
		t.Helper()
		c := g.client(t)
		req, err := http.NewRequest(http.MethodGet, c.BaseURL+admin.TracePath(queue.TraceQuery{Recipient: rcpt}), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []admin.Traced
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, resp.Header, out
	}
	// waitFound waits (bounded) until node B's tracking finds the message to rcpt, handed over every 2 s.
	waitFound := func(rcpt string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			code, _, msgs := traced(b, rcpt)
			if code == http.StatusOK && len(msgs) == 1 {
				if m := msgs[0]; m.Node != "a.example.net" || len(m.Recipients) != 1 || m.Recipients[0].State != "delivered" || len(m.Timeline) != 1 {
					t.Errorf("node B traces %s as %+v, want node a.example.net, delivered, one attempt", rcpt, m)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node B does not find the message to %s %s after node A delivered it (last answer %d, %v)", rcpt, within, code, msgs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	send("bob@example.com")
	waitFound("bob@example.com", 20*time.Second)

	srv.Stop()
	send("carol@example.com") // delivered although the database is down
	deadline := time.Now().Add(20 * time.Second)
	for c := componentOf(t, a, "tracking"); c.State != admin.ComponentFailed || !strings.Contains(c.Reason, "1 finished messages not yet"); c = componentOf(t, a, "tracking") {
		if time.Now().After(deadline) {
			t.Fatalf("node A's component tracking = %+v 20 s into the outage, want failed with 1 message waiting", c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, h, msgs := traced(a, "carol@example.com")
	if code != http.StatusOK || len(msgs) != 1 || msgs[0].Node != "a.example.net" || !strings.Contains(h.Get("X-Mxgate-Partial"), "does not answer") {
		t.Errorf("node A traces its own message during the outage: %d %v (partial %q), want it, said partial", code, msgs, h.Get("X-Mxgate-Partial"))
	}

	srv.Start()
	waitFound("carol@example.com", 30*time.Second)
	deadline = time.Now().Add(20 * time.Second)
	for componentOf(t, a, "tracking").State != admin.ComponentRunning {
		if time.Now().After(deadline) {
			t.Fatalf("node A's component tracking = %+v after the outage", componentOf(t, a, "tracking"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
