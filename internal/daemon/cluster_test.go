package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/testpki"
)

// TestClusterCommitOnOneNodeLiveOnAnotherWithin2s: two gateways share one PostgreSQL database ([data]
// database). A commit on node 1 that turns MTA-STS off is in force on node 2 within 2 s: node 2's status
// reports it as running, and node 2 then delivers to an MX whose certificate the enforced policy refused a
// moment before. Node 2 was never told about the commit except through the database.
func TestClusterCommitOnOneNodeLiveOnAnotherWithin2s(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	bad := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10, Cert: &bad})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	if _, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n"); err != nil {
		t.Fatal(err)
	}
	shared := func(node string) func(*config.Config) {
		return func(c *config.Config) { c.Data.Database = dsn; c.Node = node }
	}
	node1 := startGateway(t, n, shared("node1.example.net"))
	node2 := startGateway(t, n, shared("node2.example.net"))
	ctx := context.Background()

	c, err := smtp.Dial(node2.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatal(err)
	}
	if ev := node2.nextEvent(t, "example.com"); ev.Result.Outcome != "deferred" || ev.Result.ResultType != "certificate-not-trusted" {
		t.Fatalf("node 2 before the commit: %+v, want deferred certificate-not-trusted", ev.Result)
	}

	s1 := node1.d.Settings()
	if err := s1.Set(ctx, "Sender.EnableMTASTS", "false"); err != nil {
		t.Fatal(err)
	}
	snap, err := s1.Commit(ctx, "disable MTA-STS while the receiver fixes its certificate", "test")
	if err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	deadline := committed.Add(2 * time.Second)
	for {
		st, err := node2.d.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Generation.Running == snap.Generation {
			t.Logf("generation %d running on node 2 %s after the commit on node 1", snap.Generation, time.Since(committed).Round(time.Millisecond))
			if st.Generation.Committed != snap.Generation || st.Database == "" || strings.Contains(strings.Join(st.Warnings, "\n"), "database") {
				t.Errorf("node 2 status = %+v, want committed %d, the database named, no warning about it", st, snap.Generation)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 2 still runs generation %d 2 s after node 1 committed %d (status committed %d)", st.Generation.Running, snap.Generation, st.Generation.Committed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := sendOn(c, "carol@example.com", "2"); err != nil {
		t.Fatalf("intake on node 2 after the commit: %v", err)
	}
	ev := node2.nextEvent(t, "example.com")
	if ev.Result.Outcome != "delivered" || ev.Plan != "opportunistic" || !strings.HasPrefix(ev.Result.TLS, "unverified") {
		t.Fatalf("node 2 after the commit: %+v (plan %s), want opportunistic delivery", ev.Result, ev.Plan)
	}
	if got := len(mx.Messages()); got != 1 {
		t.Errorf("MX has %d messages, want 1", got)
	}
}

// TestClusterNodeKeepsItsGenerationWhileTheDatabaseIsGone: with the shared database unreachable, a node keeps
// accepting and delivering under the generation in force, its status says the database is unreachable, a
// commit fails clearly rather than half-applied; when the database returns the node catches up by itself with
// the next commit.
func TestClusterNodeKeepsItsGenerationWhileTheDatabaseIsGone(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	shared := func(node string) func(*config.Config) {
		return func(c *config.Config) { c.Data.Database = dsn; c.Node = node }
	}
	node1 := startGateway(t, n, shared("node1.example.net"))
	node2 := startGateway(t, n, shared("node2.example.net"))
	ctx := context.Background()
	s1, s2 := node1.d.Settings(), node2.d.Settings()
	if err := s1.Set(ctx, "TLSRPT.OrganizationName", "Before the outage"); err != nil {
		t.Fatal(err)
	}
	before, err := s1.Commit(ctx, "before", "test")
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, node2, before.Generation)

	restore := storetest.CutOff(t, dsn)
	st, err := node2.d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation.Running != before.Generation || len(st.Warnings) == 0 || !strings.Contains(strings.Join(st.Warnings, "\n"), "unreachable") {
		t.Errorf("node 2 status with the database gone = running %d, warnings %q; want running %d and a warning that the database is unreachable",
			st.Generation.Running, st.Warnings, before.Generation)
	}
	if err := s2.Set(ctx, "TLSRPT.OrganizationName", "During the outage"); err == nil {
		t.Error("staging a change with the database gone succeeded")
	}
	if _, err := s2.Commit(ctx, "during", "test"); err == nil {
		t.Error("a commit with the database gone succeeded")
	}
	if got := s2.Current(); got.Generation != before.Generation || got.Get("TLSRPT.OrganizationName") != "Before the outage" {
		t.Errorf("node 2 settings with the database gone = %+v, want generation %d unchanged", got, before.Generation)
	}
	c, err := smtp.Dial(node2.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatalf("intake on node 2 with the database gone: %v", err)
	}
	if ev := node2.nextEvent(t, "example.com"); ev.Result.Outcome != "delivered" {
		t.Fatalf("delivery from node 2 with the database gone: %+v, want delivered", ev.Result)
	}
	if got := len(mx.Messages()); got != 1 {
		t.Errorf("MX has %d messages, want 1", got)
	}

	restore()
	if err := s1.Set(ctx, "TLSRPT.OrganizationName", "After the outage"); err != nil {
		t.Fatalf("staging after the database returned: %v", err)
	}
	after, err := s1.Commit(ctx, "after", "test")
	if err != nil {
		t.Fatalf("commit after the database returned: %v", err)
	}
	// The notification connection reconnects with back-off; the poll catches up within a second of the
	// pool reconnecting. Bounded generously: this waits for reconnection, not for propagation.
	waitRunningWithin(t, node2, after.Generation, 20*time.Second)
	if got := s2.Current().Get("TLSRPT.OrganizationName"); got != "After the outage" {
		t.Errorf("node 2 after the outage runs organisation %q", got)
	}
}

func waitRunning(t *testing.T, g *gw, gen int) {
	t.Helper()
	waitRunningWithin(t, g, gen, 2*time.Second)
}

// waitRunningWithin waits until g's status reports generation gen running.
func waitRunningWithin(t *testing.T, g *gw, gen int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := g.d.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Generation.Running == gen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node runs generation %d, not %d, after %s", st.Generation.Running, gen, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
