package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/cli"
	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
)

// TestClusterBulkActionOnEveryNode: a bulk action given on node 1 with all_nodes is done by every node on
// its own queue, the counts summed; a stopped node is named as not done, never counted; a destructive action
// confirmed for fewer messages than the nodes together would affect does nothing anywhere; node 1's console
// acts on every node by default. Another node's call (the cluster secret) may do a bulk action on the node's
// own queue, but not fan it out again.
func TestClusterBulkActionOnEveryNode(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := newSimNet(t)
	if _, err := n.AddMX(simnet.MXOptions{Domain: "defer.example", Host: "mx.defer.example", Pref: 10,
		RcptReply: func(string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}}); err != nil {
		t.Fatal(err)
	}
	n1 := startClusterNode(t, n, dsn, "node1.example.net")
	n2 := startClusterNode(t, n, dsn, "node2.example.net")
	n3 := startClusterNode(t, n, dsn, "node3.example.net")
	ids := map[string]string{}
	for _, c := range []*clusterNode{n1, n2, n3} {
		ids[c.name] = c.queueOne(t, "rcpt@defer.example")
	}
	ctx := context.Background()
	c1 := n1.client(t)
	waitNodes(t, c1, "three nodes", func(l admin.NodeList) bool { return len(l.Nodes) == 3 })
	n3.stop()

	held := func(c *clusterNode) bool {
		t.Helper()
		m, err := c.d.Queue.Get(ctx, ids[c.name])
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		return m.Held
	}
	res, err := c1.QueueBulk(ctx, admin.BulkRequest{Action: "hold", Domain: "defer.example", AllNodes: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Affected != 2 || res.Matched != 2 || len(res.Nodes) != 2 || res.Nodes[0].Node != n1.name || res.Nodes[1].Node != n2.name {
		t.Errorf("hold on every node: %+v, want 2 messages, of node 1 and node 2", res)
	}
	if len(res.Failed) != 1 || res.Failed[0].Node != n3.name || res.Failed[0].Error == "" {
		t.Errorf("hold on every node: failed nodes %+v, want node 3 named with the reason", res.Failed)
	}
	if !held(n1) || !held(n2) {
		t.Errorf("after the hold on every node: node 1 held %v, node 2 held %v; want both", held(n1), held(n2))
	}

	// Delete: the preview counts both nodes; a confirmation of one message does nothing on either node.
	del := admin.BulkRequest{Action: "delete", Held: true, AllNodes: true, DryRun: true}
	p, err := c1.QueueBulk(ctx, del)
	if err != nil || p.Affected != 2 || !p.DryRun || len(p.Failed) != 1 {
		t.Fatalf("delete preview on every node: %+v, %v; want 2 messages and node 3 named", p, err)
	}
	del.DryRun, del.Confirm = false, 1
	var ae *admin.APIError
	if _, err := c1.QueueBulk(ctx, del); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("delete confirmed for 1 of 2 messages: %v, want 409", err)
	}
	if !held(n1) || !held(n2) {
		t.Fatal("a refused delete changed a queue")
	}

	// Node 1's console: the review counts every node, the confirmation releases both.
	b := loginConsole(t, n1.gw)
	page := b.get("/queue/bulk?action=release&domain=defer.example")
	for _, want := range []string{"Release 2 messages", n2.name + ": 1", n3.name, `href="/queue/` + ids[n2.name] + `?node=` + n2.name + `"`} {
		if !strings.Contains(page, want) {
			t.Errorf("console review of a release on every node lacks %q:\n%s", want, page)
		}
	}
	after := b.post("/queue/bulk", url.Values{"action": {"release"}, "domain": {"defer.example"}, "confirm": {"2"}})
	if !strings.Contains(after, "done for 2 message(s)") || !strings.Contains(after, "Not done on node "+n3.name) {
		t.Errorf("console after the release on every node lacks the count or node 3:\n%s", after)
	}
	if held(n1) || held(n2) {
		t.Errorf("after the console's release: node 1 held %v, node 2 held %v; want neither", held(n1), held(n2))
	}

	// The command line: the sum with each node's count, node 3 named, exit status 1.
	var out, errb bytes.Buffer
	code := cli.Main([]string{"--admin", c1.BaseURL, "--token", c1.Token, "queue", "hold", "--domain", "defer.example", "--all-nodes"}, &out, &errb)
	if code != 1 || out.String() != "2 messages (2 recipients) held on "+n1.name+": 1, "+n2.name+": 1\n" ||
		!strings.Contains(errb.String(), "1 node(s) did not do it: "+n3.name+" (") {
		t.Errorf("mxgate queue hold --all-nodes: exit %d, stdout %q, stderr %q; want 1, both nodes' counts, node 3 named", code, out.String(), errb.String())
	}
	if !held(n1) || !held(n2) {
		t.Errorf("after mxgate queue hold --all-nodes: node 1 held %v, node 2 held %v; want both", held(n1), held(n2))
	}

	// With the cluster secret, node 2 does a bulk action on its own queue, and refuses to fan it out.
	pg, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	secret, err := nodes.PostgresStorage{PG: pg}.Secret(ctx, "not this one")
	if err != nil {
		t.Fatal(err)
	}
	peer := &admin.Client{BaseURL: "http://" + n2.d.AdminAddr(), Token: secret}
	if r, err := peer.QueueBulk(ctx, admin.BulkRequest{Action: "retry", All: true, DryRun: true}); err != nil || r.Matched != 1 {
		t.Errorf("bulk preview on node 2 with the cluster secret: %+v, %v; want its one message", r, err)
	}
	if _, err := peer.QueueBulk(ctx, admin.BulkRequest{Action: "retry", All: true, AllNodes: true}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("all_nodes with the cluster secret: %v, want 400", err)
	}
	if _, err := n1.d.Queue.Get(ctx, ids[n1.name]); errors.Is(err, queue.ErrNotFound) {
		t.Error("node 1's message is gone")
	}
}
