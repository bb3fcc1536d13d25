package daemon_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/cli"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/testpki"
)

// clusterNode is a gateway of a test cluster that the test may stop.
type clusterNode struct {
	*gw
	name string
	stop func()
}

// startClusterNode runs a gateway named name on the shared database dsn, with a fast heartbeat so that a
// stopped node is found silent quickly.
func startClusterNode(t *testing.T, n *simnet.Net, dsn, name string, edit ...func(*config.Config)) *clusterNode {
	t.Helper()
	return startClusterNodeWith(t, n, dsn, name, nil, edit...)
}

// startClusterNodeWith is startClusterNode with the daemon's options edited by opt (when not nil).
func startClusterNodeWith(t *testing.T, n *simnet.Net, dsn, name string, opt func(*daemon.Options), edit ...func(*config.Config)) *clusterNode {
	t.Helper()
	cfg := n.GatewayConfig(t.TempDir())
	cfg.Data.Database, cfg.Node = dsn, name
	for _, e := range edit {
		e(cfg)
	}
	cfg.Queue.RetryInitial = config.Duration(time.Hour)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.URL == "https://" {
		// The node's admin URL over TLS on the port just bound, with a certificate the other nodes trust.
		cfg.Admin.URL += aln.Addr().String()
		writeAdminCert(t, n, cfg)
	}
	g := &gw{dir: cfg.Data.Dir, n: n, smtp: ln.Addr().String(), events: make(chan delivery.Event, 1000)}
	o := daemon.Options{BootstrapOut: &g.printed, Config: cfg, Roots: n.RootPool(),
		SMTPListener: ln, AdminListener: aln, OnDelivery: func(ev delivery.Event) { g.events <- ev },
		HeartbeatInterval: 100 * time.Millisecond}
	if opt != nil {
		opt(&o)
	}
	g.d, err = daemon.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.d.Run(ctx) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run of %s: %v", name, err)
		}
	}
	t.Cleanup(stop)
	return &clusterNode{gw: g, name: name, stop: stop}
}

// queueOne submits one message to rcpt on node and waits for its first attempt to be deferred; it returns the
// message's queue id.
func (c *clusterNode) queueOne(t *testing.T, rcpt string) string {
	t.Helper()
	cl, err := smtp.Dial(c.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := sendOn(cl, rcpt, c.name); err != nil {
		t.Fatal(err)
	}
	if ev := c.nextEvent(t, "defer.example"); ev.Result.Outcome != "deferred" {
		t.Fatalf("%s: %+v, want deferred", c.name, ev.Result)
	}
	list, err := c.d.Queue.List(context.Background(), queue.Filter{})
	if err != nil || len(list) == 0 {
		t.Fatalf("%s queue: %v, %v; want the message", c.name, list, err)
	}
	newest := slices.MaxFunc(list, func(a, b queue.MessageInfo) int { return a.Received.Compare(b.Received) })
	return newest.ID
}

// waitNodes asks c for the node list until ok accepts it, failing after 20 s. The registry has no event to
// wait on: the rows change with the other nodes' heartbeats.
func waitNodes(t *testing.T, c *admin.Client, what string, ok func(admin.NodeList) bool) admin.NodeList {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := c.Nodes(context.Background())
		if err == nil && ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("node list never showed %s: %+v (%v)", what, l, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func nodeByName(l admin.NodeList, name string) (admin.NodeInfo, bool) {
	i := slices.IndexFunc(l.Nodes, func(n admin.NodeInfo) bool { return n.Name == name })
	if i < 0 {
		return admin.NodeInfo{}, false
	}
	return l.Nodes[i], true
}

// TestClusterNodesQueueAndActionsAcrossNodes: three gateways on one PostgreSQL database, each holding a
// deferred message. From node 1: the registry lists the three with their admin URLs, generations and queues;
// the cluster queue lists the three messages with their nodes; hold on node 2's message and delete on node 3's
// are done by those nodes. Another node's calls authenticate with the cluster secret, which opens the queue
// and status and nothing else. When node 3 stops and a commit follows, node 1 flags it lagging and silent and
// says its queue cannot be read.
func TestClusterNodesQueueAndActionsAcrossNodes(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := deferringSimNet(t)
	n1 := startClusterNode(t, n, dsn, "node1.example.net")
	n2 := startClusterNode(t, n, dsn, "node2.example.net")
	// Node 3's admin listener serves HTTPS, as on a node of another machine.
	n3 := startClusterNode(t, n, dsn, "node3.example.net", func(c *config.Config) { c.Admin.URL = "https://" })
	ids := map[string]string{}
	for _, c := range []*clusterNode{n1, n2, n3} {
		ids[c.name] = c.queueOne(t, "rcpt@defer.example")
	}
	ctx := context.Background()
	c1 := n1.client(t)

	l := waitNodes(t, c1, "three nodes with one queued message each", func(l admin.NodeList) bool {
		if len(l.Nodes) != 3 {
			return false
		}
		for _, n := range l.Nodes {
			if n.Queued != 1 {
				return false
			}
		}
		return true
	})
	if l.Self != n1.name || l.Committed != 1 {
		t.Errorf("node list: self %q committed %d, want %s and 1", l.Self, l.Committed, n1.name)
	}
	for _, c := range []*clusterNode{n1, n2, n3} {
		ni, _ := nodeByName(l, c.name)
		scheme := "http://"
		if c == n3 {
			scheme = "https://"
		}
		if ni.AdminURL != scheme+c.d.AdminAddr() || ni.Running != 1 || ni.Committed != 1 || len(ni.Flags) != 0 ||
			ni.Self != (c == n1) || ni.Version == "" || ni.Heartbeat.IsZero() {
			t.Errorf("registry row of %s: %+v", c.name, ni)
		}
	}

	cq, err := c1.ClusterQueue(ctx, admin.QueueFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range cq.Messages {
		got[m.Node] = m.ID
	}
	if len(cq.Messages) != 3 || len(cq.Unreachable) != 0 || got[n2.name] != ids[n2.name] || got[n3.name] != ids[n3.name] || got[n1.name] != ids[n1.name] {
		t.Fatalf("cluster queue from node 1: %+v, want %v", cq, ids)
	}

	// Actions given on node 1 are done by the owning node.
	if err := c1.Act(ctx, n2.name, ids[n2.name], queue.ActionHold); err != nil {
		t.Fatal(err)
	}
	if m, err := n2.d.Queue.Get(ctx, ids[n2.name]); err != nil || !m.Held {
		t.Errorf("node 2's message after hold through node 1: held %v (%v)", m.Held, err)
	}
	if m, err := c1.NodeMessage(ctx, n2.name, ids[n2.name]); err != nil || !m.Held || m.ID != ids[n2.name] {
		t.Errorf("node 2's message shown through node 1: %+v (%v)", m.Message, err)
	}
	if err := c1.Act(ctx, n3.name, ids[n3.name], queue.ActionDelete); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.d.Queue.Get(ctx, ids[n3.name]); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("node 3's message after delete through node 1: %v, want not found", err)
	}
	if err := c1.Act(ctx, n2.name, ids[n3.name], queue.ActionRetry); !admin.IsNotFound(err) {
		t.Errorf("retry of a message node 2 does not hold: %v, want 404", err)
	}
	if err := c1.Act(ctx, "node9.example.net", ids[n2.name], queue.ActionRetry); !admin.IsNotFound(err) || !strings.Contains(err.Error(), "node9") {
		t.Errorf("action on an unknown node: %v, want 404 naming it", err)
	}

	// The cluster secret opens another node's queue and status, and nothing else.
	pg, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	secret, err := nodes.PostgresStorage{PG: pg}.Secret(ctx, "not this one")
	if err != nil || len(secret) != 64 {
		t.Fatalf("cluster secret: %q, %v", secret, err)
	}
	peer := &admin.Client{BaseURL: "http://" + n2.d.AdminAddr(), Token: secret}
	if msgs, err := peer.ListQueue(ctx, admin.QueueFilter{}); err != nil || len(msgs) != 1 {
		t.Errorf("node 2's queue with the cluster secret: %v, %v", msgs, err)
	}
	var raw []byte
	for _, p := range []string{"/api/v1/settings", "/api/v1/nodes", "/metrics", "/api/v1/sts/cache"} {
		var ae *admin.APIError
		if err := peer.Do(ctx, http.MethodGet, p, nil, &raw); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Errorf("GET %s with the cluster secret: %v, want 401", p, err)
		}
	}
	wrong := &admin.Client{BaseURL: peer.BaseURL, Token: strings.Repeat("0", 64)}
	if _, err := wrong.ListQueue(ctx, admin.QueueFilter{}); err == nil {
		t.Error("node 2's queue with a wrong secret: listed")
	}

	// Node 3 stops; a commit follows: node 1 flags it lagging and silent, and says its queue is not listed.
	n3.stop()
	s1 := n1.d.Settings()
	if err := s1.Set(ctx, "TLSRPT.OrganizationName", "After node 3 stopped"); err != nil {
		t.Fatal(err)
	}
	snap, err := s1.Commit(ctx, "while node 3 is down", "test")
	if err != nil {
		t.Fatal(err)
	}
	l = waitNodes(t, c1, "node 3 lagging and silent", func(l admin.NodeList) bool {
		ni, _ := nodeByName(l, n3.name)
		return slices.Equal(ni.Flags, []nodes.Flag{nodes.FlagLagging, nodes.FlagSilent})
	})
	for _, c := range []*clusterNode{n1, n2} {
		if ni, _ := nodeByName(l, c.name); len(ni.Flags) != 0 || ni.Running != snap.Generation {
			t.Errorf("%s after the commit: %+v, want generation %d and no flag", c.name, ni, snap.Generation)
		}
	}
	cq, err = c1.ClusterQueue(ctx, admin.QueueFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cq.Unreachable) != 1 || cq.Unreachable[0].Node != n3.name || len(cq.Messages) != 2 {
		t.Errorf("cluster queue with node 3 down: %+v, want node 3 unreachable and two messages", cq)
	}

	// Node 3 is retired: once forgotten it is listed nowhere.
	if err := c1.ForgetNode(ctx, n3.name); err != nil {
		t.Fatal(err)
	}
	if l, err := c1.Nodes(ctx); err != nil || len(l.Nodes) != 2 {
		t.Errorf("nodes after forgetting node 3: %+v, %v", l, err)
	}
	if cq, err := c1.ClusterQueue(ctx, admin.QueueFilter{}); err != nil || len(cq.Unreachable) != 0 {
		t.Errorf("cluster queue after forgetting node 3: %+v, %v", cq, err)
	}
	if err := c1.ForgetNode(ctx, n3.name); !admin.IsNotFound(err) {
		t.Errorf("forgetting node 3 again: %v, want 404", err)
	}
}

var consolePasswordRE = regexp.MustCompile(`account \S+: (\S+) \(stored`)

// TestConsoleShowsNodesAndActsOnAnotherNodesMessage: node 1's console lists node 2's message with its node,
// releases it on node 2, and shows both nodes on its Nodes page.
func TestConsoleShowsNodesAndActsOnAnotherNodesMessage(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := deferringSimNet(t)
	n1 := startClusterNode(t, n, dsn, "node1.example.net")
	n2 := startClusterNode(t, n, dsn, "node2.example.net")
	id := n2.queueOne(t, "rcpt@defer.example")
	ctx := context.Background()
	if err := n2.d.Queue.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, n1.client(t), "two nodes", func(l admin.NodeList) bool { return len(l.Nodes) == 2 })

	b := loginConsole(t, n1.gw)
	page := b.get("/queue")
	ref := id + "@" + n2.name
	for _, want := range []string{`value="` + ref + `"`, "<td>" + n2.name + "</td>", `href="/queue/` + id + `?node=node2.example.net"`} {
		if !strings.Contains(page, want) {
			t.Errorf("queue page of node 1 lacks %q", want)
		}
	}
	if detail := b.get("/queue/" + id + "?node=" + n2.name); !strings.Contains(detail, `id="msg-node"`) || !strings.Contains(detail, "(held)") {
		t.Errorf("node 2's message on node 1's console:\n%s", detail)
	}
	b.get("/queue/confirm?action=release&id=" + url.QueryEscape(ref))
	b.post("/queue/action", url.Values{"action": {"release"}, "id": {ref}})
	if m, err := n2.d.Queue.Get(ctx, id); err != nil || m.Held {
		t.Errorf("node 2's message after release on node 1's console: held %v (%v)", m.Held, err)
	}
	nodesPage := b.get("/nodes")
	for _, want := range []string{n1.name, n2.name, "http://" + n2.d.AdminAddr(), "this node"} {
		if !strings.Contains(nodesPage, want) {
			t.Errorf("Nodes page lacks %q", want)
		}
	}
}

// consoleBrowser is a logged-in console session.
type consoleBrowser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

var csrfFieldRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func loginConsole(t *testing.T, g *gw) *consoleBrowser {
	t.Helper()
	m := consolePasswordRE.FindStringSubmatch(g.printed.String())
	if m == nil {
		t.Fatalf("no console password printed: %q", g.printed.String())
	}
	jar, _ := cookiejar.New(nil)
	b := &consoleBrowser{t: t, base: "http://" + g.d.AdminAddr(), c: &http.Client{Jar: jar}}
	b.get("/login")
	b.post("/login", url.Values{"password": {m[1]}, "next": {"/"}})
	if b.get("/"); b.csrf == "" {
		t.Fatal("console login failed")
	}
	return b
}

func (b *consoleBrowser) keep(resp *http.Response, err error) string {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfFieldRE.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	if resp.StatusCode != http.StatusOK {
		b.t.Errorf("%s %s: %d\n%s", resp.Request.Method, resp.Request.URL, resp.StatusCode, body)
	}
	return string(body)
}

func (b *consoleBrowser) get(path string) string {
	b.t.Helper()
	return b.keep(b.c.Get(b.base + path))
}

func (b *consoleBrowser) post(path string, form url.Values) string {
	b.t.Helper()
	form.Set("csrf", b.csrf)
	req, _ := http.NewRequest(http.MethodPost, b.base+path, bytes.NewBufferString(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.base)
	return b.keep(b.c.Do(req))
}

// TestSingleNodeListsItself: with no database configured, `mxgate nodes` lists the node alone, unflagged,
// and `mxgate queue list --all-nodes` lists its queue with its name.
func TestSingleNodeListsItself(t *testing.T) {
	n := deferringSimNet(t)
	g := startGateway(t, n, func(c *config.Config) { c.Node = "solo.example.net" })
	id := (&clusterNode{gw: g, name: "solo.example.net"}).queueOne(t, "rcpt@defer.example")
	c := g.client(t)
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := cli.Main(append([]string{"--admin", c.BaseURL, "--token", c.Token}, args...), &out, &errb); code != 0 {
			t.Fatalf("mxgate %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	var l admin.NodeList
	if err := json.Unmarshal([]byte(run("nodes", "--json")), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Nodes) != 1 || l.Nodes[0].Name != "solo.example.net" || !l.Nodes[0].Self || len(l.Nodes[0].Flags) != 0 ||
		l.Nodes[0].AdminURL != c.BaseURL || l.Nodes[0].Running != 1 {
		t.Errorf("mxgate nodes --json on a single node: %+v", l)
	}
	if out := run("nodes"); !strings.Contains(out, "solo.example.net (this node)") || !strings.Contains(out, " ok") {
		t.Errorf("mxgate nodes:\n%s", out)
	}
	if out := run("queue", "list", "--all-nodes"); !strings.Contains(out, "solo.example.net") || !strings.Contains(out, id) {
		t.Errorf("mxgate queue list --all-nodes:\n%s", out)
	}
	if out := run("queue", "hold", "--node", "solo.example.net", id); !strings.Contains(out, "held message "+id+" on node solo.example.net") {
		t.Errorf("mxgate queue hold --node:\n%s", out)
	}
	if m, err := g.d.Queue.Get(context.Background(), id); err != nil || !m.Held {
		t.Errorf("after hold --node of this node: held %v (%v)", m.Held, err)
	}
}

// writeAdminCert gives cfg's admin listener a certificate for 127.0.0.1 from the simulated internet's
// trusted CA, which the other nodes' trust store (Options.Roots) holds.
func writeAdminCert(t *testing.T, n *simnet.Net, cfg *config.Config) {
	t.Helper()
	cert := n.TrustedCA.MustIssue(testpki.Leaf{IPAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.Admin.TLSCertFile, cfg.Admin.TLSKeyFile = filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(cfg.Admin.TLSCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Admin.TLSKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNodeRegistryThroughADatabaseOutage: while the shared database is cut off, a running node says in its
// status and /healthz that its heartbeat is not written, and a node restarted meanwhile starts all the same
// (from its local copies); when the database returns, both write their heartbeat again and are listed.
func TestNodeRegistryThroughADatabaseOutage(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := newSimNet(t)
	n1 := startClusterNode(t, n, dsn, "node1.example.net")
	dir2 := t.TempDir()
	inDir2 := func(c *config.Config) { c.Data.Dir = dir2 }
	n2 := startClusterNode(t, n, dsn, "node2.example.net", inDir2)
	c1 := n1.client(t)
	waitNodes(t, c1, "two nodes", func(l admin.NodeList) bool { return len(l.Nodes) == 2 })
	n2.stop()

	restore := storetest.CutOff(t, dsn)
	ctx := context.Background()
	registryState := func(g *gw) admin.Component {
		st, err := g.d.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(st.Components, func(c admin.Component) bool { return c.Name == "registry" })
		if i < 0 {
			return admin.Component{}
		}
		return st.Components[i]
	}
	deadline := time.Now().Add(20 * time.Second)
	for registryState(n1.gw).State != admin.ComponentFailed {
		if time.Now().After(deadline) {
			t.Fatalf("node 1's registry component with the database cut off: %+v, want failed", registryState(n1.gw))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := registryState(n1.gw); !strings.Contains(c.Reason, "silent") {
		t.Errorf("registry component reason %q: want it to say the other nodes see this node silent", c.Reason)
	}
	if code, body := n1.get(t, "/healthz"); code != http.StatusOK || !strings.Contains(body, `"registry"`) || !strings.Contains(body, "degraded") {
		t.Errorf("/healthz with the heartbeat failing: %d %s", code, body)
	}
	n2 = startClusterNode(t, n, dsn, "node2.example.net", inDir2)
	started := time.Now()

	restore()
	l := waitNodes(t, c1, "both nodes beating again", func(l admin.NodeList) bool {
		a, _ := nodeByName(l, n1.name)
		b, _ := nodeByName(l, n2.name)
		return len(l.Nodes) == 2 && len(a.Flags) == 0 && len(b.Flags) == 0 && b.Started.After(started.Add(-time.Second))
	})
	if c := registryState(n1.gw); c.State != admin.ComponentRunning {
		t.Errorf("node 1's registry component after the outage: %+v, want running (%+v)", c, l)
	}
}

// TestClusterTwoNodesWithOneNameAreFlagged: two gateways started with the same node name (a cloned
// configuration) on one PostgreSQL database each find the registry row written by the other: both show the
// registry component degraded with a reason naming the clash (status, /healthz), a third node's list flags the
// name, and the cluster queue says, from either side, that a process's queue is not listed rather than
// leaving it out silently. Once one of the two stops, the other is running again.
func TestClusterTwoNodesWithOneNameAreFlagged(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := newSimNet(t)
	const name = "node1.example.net"
	a := startClusterNode(t, n, dsn, name)
	b := startClusterNode(t, n, dsn, name)
	c := startClusterNode(t, n, dsn, "node2.example.net")
	ctx := context.Background()
	registry := func(g *gw) admin.Component {
		st, err := g.d.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(st.Components, func(c admin.Component) bool { return c.Name == "registry" })
		if i < 0 {
			return admin.Component{}
		}
		return st.Components[i]
	}
	waitRegistry := func(g *gw, who string, want admin.ComponentState) admin.Component {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			comp := registry(g)
			if comp.State == want {
				return comp
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: registry component %+v, want %s", who, comp, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, g := range []*clusterNode{a, b} {
		comp := waitRegistry(g.gw, "a node sharing its name", admin.ComponentDegraded)
		if !strings.Contains(comp.Reason, `two processes run as node "`+name+`"`) || !strings.Contains(comp.Reason, "own `node` name") {
			t.Errorf("registry reason %q: want it to name the clash and the fix", comp.Reason)
		}
	}
	if code, body := a.get(t, "/healthz"); code != http.StatusOK || !strings.Contains(body, `"degraded"`) {
		t.Errorf("/healthz with a name clash: %d %s", code, body)
	}
	cc := c.client(t)
	waitNodes(t, cc, "the shared name flagged", func(l admin.NodeList) bool {
		v, ok := nodeByName(l, name)
		return ok && slices.Contains(v.Flags, nodes.FlagNameClash) && strings.Contains(v.Problem, "two processes")
	})
	for who, cl := range map[string]*admin.Client{"the third node": cc, "a clashing node": a.client(t)} {
		cq, err := cl.ClusterQueue(ctx, admin.QueueFilter{})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(cq.Unreachable, func(e admin.NodeError) bool { return e.Node == name })
		if i < 0 || !strings.Contains(cq.Unreachable[i].Error, "two processes") {
			t.Errorf("cluster queue asked on %s: unreachable %+v, want %s named with the clash", who, cq.Unreachable, name)
		}
	}

	b.stop()
	waitRegistry(a.gw, "the node left alone with its name", admin.ComponentRunning)
}

// deferringSimNet returns a simulated network with one MX, for defer.example, that answers every RCPT with
// 451: mail to it stays queued for the queue actions under test.
func deferringSimNet(t *testing.T) *simnet.Net {
	t.Helper()
	n := newSimNet(t)
	if _, err := n.AddMX(simnet.MXOptions{Domain: "defer.example", Host: "mx.defer.example", Pref: 10,
		RcptReply: func(string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}}); err != nil {
		t.Fatal(err)
	}
	return n
}
