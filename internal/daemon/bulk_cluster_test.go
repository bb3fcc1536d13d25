package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/cli"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
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
	n := deferringSimNet(t)
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
	if _, err := c1.QueueBulk(ctx, del); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("delete on every node without each node's reviewed count: %v, want 400", err)
	}
	del.ConfirmNodes = map[string]int{n1.name: 1, n2.name: 1}
	if _, err := c1.QueueBulk(ctx, del); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("delete confirmed for 1 message with nodes counted 2: %v, want 400", err)
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
	// A real run with the cluster secret must carry the node's count, as the fan-out sends it.
	if _, err := peer.QueueBulk(ctx, admin.BulkRequest{Action: "release", All: true}); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("release without confirm with the cluster secret: %v, want 409", err)
	}
	if !held(n2) {
		t.Error("a release with the cluster secret and no confirm released node 2's message")
	}
	if _, err := n1.d.Queue.Get(ctx, ids[n1.name]); errors.Is(err, queue.ErrNotFound) {
		t.Error("node 1's message is gone")
	}
}

var hiddenInputRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// TestClusterBulkDeleteActsOnlyOnReviewed: a delete confirmed in node 1's console acts on no node beyond
// what its review showed. Node 2 had nothing held at the review; when node 1's held message is released and
// node 2's is held before the confirmation, the confirmed delete of "1 message" deletes neither. The command
// line names the nodes that could not be reviewed before it asks.
func TestClusterBulkDeleteActsOnlyOnReviewed(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := deferringSimNet(t)
	n1 := startClusterNode(t, n, dsn, "node1.example.net")
	n2 := startClusterNode(t, n, dsn, "node2.example.net")
	n3 := startClusterNode(t, n, dsn, "node3.example.net")
	id1, id2 := n1.queueOne(t, "rcpt@defer.example"), n2.queueOne(t, "rcpt@defer.example")
	ctx := context.Background()
	c1 := n1.client(t)
	waitNodes(t, c1, "three nodes", func(l admin.NodeList) bool { return len(l.Nodes) == 3 })
	n3.stop()
	if err := queue.ActionHold.Do(ctx, n1.d.Queue, id1); err != nil {
		t.Fatal(err)
	}

	b := loginConsole(t, n1.gw)
	page := b.get("/queue/bulk?action=delete&held=true")
	if !strings.Contains(page, "Delete 1 message") {
		t.Fatalf("console review of a delete of held messages lacks the one message of node 1:\n%s", page)
	}
	form := url.Values{}
	for _, m := range hiddenInputRE.FindAllStringSubmatch(page, -1) {
		if m[1] != "csrf" {
			form.Add(m[1], html.UnescapeString(m[2]))
		}
	}
	// Meanwhile node 1's message is released and node 2's held: the review showed none of node 2's.
	if err := queue.ActionRelease.Do(ctx, n1.d.Queue, id1); err != nil {
		t.Fatal(err)
	}
	if err := queue.ActionHold.Do(ctx, n2.d.Queue, id2); err != nil {
		t.Fatal(err)
	}
	after := b.post("/queue/bulk", form)
	if _, err := n2.d.Queue.Get(ctx, id2); err != nil {
		t.Errorf("node 2's message, held after the review, after the confirmed delete: %v; want it left alone\n%s", err, after)
	}
	if _, err := n1.d.Queue.Get(ctx, id1); err != nil {
		t.Errorf("node 1's message, released after the review: %v; want it left alone", err)
	}
	if !strings.Contains(after, n2.name) {
		t.Errorf("console after the delete does not name node 2, whose matching message was not reviewed:\n%s", after)
	}

	// The command line names node 3, which could not be reviewed, before it asks.
	var out, errb bytes.Buffer
	code := cli.Main([]string{"--admin", c1.BaseURL, "--token", c1.Token, "queue", "delete", "--held", "--all-nodes"}, &out, &errb)
	ask := strings.Index(errb.String(), "? [y/N]")
	named := strings.Index(errb.String(), n3.name)
	if code == 0 || ask < 0 || named < 0 || named > ask {
		t.Errorf("mxgate queue delete --all-nodes without an answer: exit %d, stderr %q; want node 3 named before the question", code, errb.String())
	}
	if _, err := n2.d.Queue.Get(ctx, id2); err != nil {
		t.Errorf("node 2's message after an unconfirmed delete: %v", err)
	}
}

// TestClusterBulkRefusedNodeCountsNothing: a node that refuses a bulk action because more messages match
// than were confirmed did nothing, and is reported so: counted nowhere, no message ids, named with the reason
// (not as a delivery in flight), whether it is the node asked or another.
func TestClusterBulkRefusedNodeCountsNothing(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := deferringSimNet(t)
	n1 := startClusterNode(t, n, dsn, "node1.example.net")
	n2 := startClusterNode(t, n, dsn, "node2.example.net")
	var ids []string
	for _, c := range []*clusterNode{n1, n1, n2, n2} {
		ids = append(ids, c.queueOne(t, "rcpt@defer.example"))
	}
	ctx := context.Background()
	c1 := n1.client(t)
	waitNodes(t, c1, "two nodes", func(l admin.NodeList) bool { return len(l.Nodes) == 2 })

	res, err := c1.QueueBulk(ctx, admin.BulkRequest{Action: "hold", Domain: "defer.example", AllNodes: true, Confirm: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Affected != 0 || res.Matched != 0 || len(res.IDs) != 0 || len(res.Nodes) != 0 {
		t.Errorf("hold confirmed for 1 message where each node has 2: %+v; want nothing counted", res)
	}
	if len(res.Failed) != 2 {
		t.Fatalf("failed nodes %+v, want both nodes named", res.Failed)
	}
	for _, f := range res.Failed {
		if !strings.Contains(f.Error, "more messages match than were confirmed") || strings.Contains(f.Error, "in flight") || strings.Contains(f.Error, "after") {
			t.Errorf("node %s: %q; want the refusal, nothing done", f.Node, f.Error)
		}
	}
	var ae *admin.APIError
	if _, err := c1.QueueBulk(ctx, admin.BulkRequest{Action: "hold", Domain: "defer.example", Confirm: 1}); !errors.As(err, &ae) ||
		ae.Status != http.StatusConflict || strings.Contains(ae.Message, "after") {
		t.Errorf("hold on node 1 confirmed for 1 of 2: %v; want 409 saying nothing was done", err)
	}
	for i, c := range []*clusterNode{n1, n1, n2, n2} {
		if m, err := c.d.Queue.Get(ctx, ids[i]); err != nil || m.Held {
			t.Errorf("%s: message %s after the refused holds: held %v, %v; want not held", c.name, ids[i], m.Held, err)
		}
	}
}

// TestClusterBulkNotCutByPeerTimeout: another node's part of a bulk action is not cut off by the timeout of
// the node's calls to its peers (a delete of many thousands takes longer): node 1, whose peer calls time out
// at once, still has node 2 do the action and counts it.
func TestClusterBulkNotCutByPeerTimeout(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := deferringSimNet(t)
	n1 := startClusterNodeWith(t, n, dsn, "node1.example.net", func(o *daemon.Options) { o.PeerTimeout = time.Nanosecond })
	n2 := startClusterNode(t, n, dsn, "node2.example.net")
	id2 := n2.queueOne(t, "rcpt@defer.example")
	ctx := context.Background()
	c1 := n1.client(t)
	waitNodes(t, c1, "two nodes", func(l admin.NodeList) bool { return len(l.Nodes) == 2 })
	res, err := c1.QueueBulk(ctx, admin.BulkRequest{Action: "hold", Domain: "defer.example", AllNodes: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Affected != 1 || len(res.Failed) != 0 {
		t.Errorf("hold on every node with node 1's peer calls timing out at once: %+v; want node 2's message held and counted", res)
	}
	if m, err := n2.d.Queue.Get(ctx, id2); err != nil || !m.Held {
		t.Errorf("node 2's message: held %v, %v; want held", m.Held, err)
	}
}

// TestClusterBulkSkipsStaleRows: a bulk action on every node does not ask a renamed node's old row (same
// admin URL) nor a row silent for days; it names them apart, not as failures.
func TestClusterBulkSkipsStaleRows(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := deferringSimNet(t)
	n1 := startClusterNode(t, n, dsn, "node1.example.net")
	n2 := startClusterNode(t, n, dsn, "node2.example.net")
	n2.queueOne(t, "rcpt@defer.example")
	ctx := context.Background()
	c1 := n1.client(t)
	l := waitNodes(t, c1, "two nodes", func(l admin.NodeList) bool { return len(l.Nodes) == 2 })
	var url2 string
	for _, v := range l.Nodes {
		if v.Name == n2.name {
			url2 = v.AdminURL
		}
	}
	pg, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	old := time.Now().Add(-72 * time.Hour)
	for _, row := range []nodes.Node{
		{Name: "node2-old.example.net", Instance: "old", AdminURL: url2, Started: old, Heartbeat: old},
		{Name: "gone.example.net", Instance: "gone", AdminURL: "http://127.0.0.1:9", Started: old, Heartbeat: old},
	} {
		if _, err := (nodes.PostgresStorage{PG: pg}).Beat(ctx, row); err != nil {
			t.Fatal(err)
		}
	}
	p, err := c1.QueueBulk(ctx, admin.BulkRequest{Action: "hold", Domain: "defer.example", AllNodes: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Affected != 1 || len(p.Nodes) != 2 || len(p.Failed) != 0 || len(p.Skipped) != 2 {
		t.Errorf("hold preview with a renamed node's old row and a long-dead row: %+v; want node 2's message once, both rows skipped, no failure", p)
	}
}
