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
			if st.Generation.Committed != snap.Generation || st.Database == "" || len(st.Warnings) != 0 {
				t.Errorf("node 2 status = %+v, want committed %d, the database named, no warnings", st, snap.Generation)
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
