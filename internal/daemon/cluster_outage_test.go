package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/testpki"
)

// runNode starts a gateway on cfg and returns it with the function that stops it (also run at the end of the
// test), so that a test can restart a node on the same data directory.
func runNode(t *testing.T, n *simnet.Net, cfg *config.Config) (*gw, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{dir: cfg.Data.Dir, n: n, smtp: ln.Addr().String(), events: make(chan delivery.Event, 1000)}
	g.d, err = daemon.New(context.Background(), daemon.Options{BootstrapOut: &g.printed, Config: cfg, Roots: n.RootPool(),
		SMTPListener: ln, AdminListener: aln, OnDelivery: func(ev delivery.Event) { g.events <- ev }})
	if err != nil {
		ln.Close()
		aln.Close()
		t.Fatalf("node did not start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.d.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return g, stop
}

func componentOf(t *testing.T, g *gw, name string) admin.Component {
	t.Helper()
	for _, c := range g.d.Components() {
		if c.Name == name {
			return c
		}
	}
	return admin.Component{}
}

// TestClusterNodeRestartsWhileTheDatabaseServerIsDown: a node of a cluster restarts while the PostgreSQL
// server is stopped. It starts, runs the last generation committed before the outage (not its bootstrap
// seed), and keeps applying the enforce policy it cached although the policy host is gone too (RFC 8461
// Section 10: blocking the database and the policy host must not downgrade delivery). Status, /healthz and the
// components show the outage while /readyz stays ready; a commit fails with ErrUnavailable. When the server
// is back the node says so by itself and commits work again.
func TestClusterNodeRestartsWhileTheDatabaseServerIsDown(t *testing.T) {
	srv := storetest.StartServer(t)
	n := newSimNet(t)
	bad := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10, Cert: &bad})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	ph, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n")
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.GatewayConfig(filepath.Join(t.TempDir(), "data"))
	cfg.Queue.RetryInitial = config.Duration(time.Hour)
	cfg.Data.Database, cfg.Node = srv.DSN, "node1.example.net"
	ctx := context.Background()

	g, stop := runNode(t, n, cfg)
	s := g.d.Settings()
	if err := s.Set(ctx, "TLSRPT.OrganizationName", "Committed before the outage"); err != nil {
		t.Fatal(err)
	}
	before, err := s.Commit(ctx, "before the outage", "test")
	if err != nil {
		t.Fatal(err)
	}
	send := func(g *gw, rcpt string) delivery.Event {
		t.Helper()
		c, err := smtp.Dial(g.smtp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := sendOn(c, rcpt, rcpt); err != nil {
			t.Fatalf("intake: %v", err)
		}
		return g.nextEvent(t, "example.com")
	}
	if ev := send(g, "bob@example.com"); ev.Result.Outcome != "deferred" || ev.Result.ResultType != "certificate-not-trusted" {
		t.Fatalf("before the outage: %+v, want deferred certificate-not-trusted (enforce)", ev.Result)
	}
	stop()

	srv.Stop()
	ph.SetStatus(http.StatusNotFound) // the policy is gone too: only the cached copy knows it is enforce
	g, _ = runNode(t, n, cfg)
	s = g.d.Settings()
	if got := s.Current(); got.Generation != before.Generation || got.Get("TLSRPT.OrganizationName") != "Committed before the outage" {
		t.Errorf("restarted node runs generation %d (%q), want %d", got.Generation, got.Get("TLSRPT.OrganizationName"), before.Generation)
	}
	if c := componentOf(t, g, "database"); c.State != admin.ComponentFailed || !strings.Contains(c.Reason, "unreachable") ||
		!strings.Contains(c.Reason, fmt.Sprintf("generation %d ", before.Generation)) {
		t.Errorf("component database = %+v, want failed, unreachable, naming generation %d", c, before.Generation)
	}
	st, err := g.d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation.Running != before.Generation || !strings.Contains(strings.Join(st.Warnings, "\n"), "unreachable") {
		t.Errorf("status: running %d, warnings %q; want %d and the database unreachable", st.Generation.Running, st.Warnings, before.Generation)
	}
	if code, body := g.get(t, "/healthz"); code != http.StatusOK || !strings.Contains(body, `"degraded"`) || !strings.Contains(body, `"database"`) {
		t.Errorf("/healthz = %d %s, want 200 degraded naming the database", code, body)
	}
	if code, body := g.get(t, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s, want ready: the node accepts and delivers mail", code, body)
	}
	if err := s.Set(ctx, "TLSRPT.OrganizationName", "During the outage"); !errors.Is(err, settings.ErrUnavailable) {
		t.Errorf("staging during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := s.Commit(ctx, "during the outage", "test"); !errors.Is(err, settings.ErrUnavailable) {
		t.Errorf("commit during the outage: %v, want ErrUnavailable", err)
	}
	if ev := send(g, "carol@example.com"); ev.Result.Outcome != "deferred" || ev.Result.ResultType != "certificate-not-trusted" {
		t.Errorf("after the restart with the database down: %+v (plan %s), want deferred certificate-not-trusted: the enforce policy applies", ev.Result, ev.Plan)
	}
	if got := len(mx.Messages()); got != 0 {
		t.Errorf("MX with an untrusted certificate received %d messages", got)
	}

	srv.Start()
	// The node notices by itself (its one-second poll of the settings); bounded generously, this waits for
	// the pool to reconnect, not for a propagation delay.
	deadline := time.Now().Add(20 * time.Second)
	for componentOf(t, g, "database").State != admin.ComponentRunning {
		if time.Now().After(deadline) {
			t.Fatalf("component database still %+v 20 s after the server returned", componentOf(t, g, "database"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Set(ctx, "TLSRPT.OrganizationName", "After the outage"); err != nil {
		t.Fatalf("staging after the outage: %v", err)
	}
	if after, err := s.Commit(ctx, "after the outage", "test"); err != nil || after.Generation != before.Generation+1 {
		t.Fatalf("commit after the outage: %+v, %v", after, err)
	}
}

// TestClusterNodesSignTLSReportsWithOneKey: the TLS report DKIM key made at first start is the cluster's, kept
// in the shared database: a second node, which had a key of its own from before it joined, takes the first
// node's, so that DNS publishes one record for the whole cluster.
func TestClusterNodesSignTLSReportsWithOneKey(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := newSimNet(t)
	ctx := context.Background()
	// Node 2 ran alone first: it has its own key in its data directory.
	dir2 := filepath.Join(t.TempDir(), "data2")
	cfg2 := n.GatewayConfig(dir2)
	alone, stop := runNode(t, n, cfg2)
	own, err := alone.d.DKIM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop()

	node1 := startGateway(t, n, func(c *config.Config) { c.Data.Database, c.Node = dsn, "node1.example.net" })
	cfg2.Data.Database, cfg2.Node = dsn, "node2.example.net"
	node2, _ := runNode(t, n, cfg2)
	r1, err := node1.d.DKIM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := node2.d.DKIM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Value != r2.Value || r1.Name != r2.Name {
		t.Errorf("node 1 publishes %s TXT %q, node 2 %s TXT %q; want one record", r1.Name, r1.Value, r2.Name, r2.Value)
	}
	if r2.Value == own.Value {
		t.Error("node 2 still signs with the key it had before it joined the cluster")
	}
}

// TestClusterSettingsCopyWriteFailureIsShown: when a node cannot write its local copy of the generation in
// force, a restart during a database outage would run an older generation, silently. The commit still takes
// effect, and the component "settings", status and /healthz say so until a later generation is written.
func TestClusterSettingsCopyWriteFailureIsShown(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	n := newSimNet(t)
	cfg := n.GatewayConfig(filepath.Join(t.TempDir(), "data"))
	cfg.Data.Database, cfg.Node = dsn, "node1.example.net"
	g, _ := runNode(t, n, cfg)
	ctx := context.Background()
	s := g.d.Settings()
	if c := componentOf(t, g, "settings"); c.State != admin.ComponentRunning {
		t.Errorf("component settings at start = %+v, want running", c)
	}

	// The copy's path becomes a directory: no file can be written there.
	replica := filepath.Join(cfg.Data.Dir, "settings-replica.json")
	if err := os.Remove(replica); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(replica, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "TLSRPT.OrganizationName", "Not copied"); err != nil {
		t.Fatal(err)
	}
	gen, err := s.Commit(ctx, "not copied", "test")
	if err != nil {
		t.Fatalf("commit: %v (the generation is in force whether or not its copy is written)", err)
	}
	if c := componentOf(t, g, "settings"); c.State != admin.ComponentFailed || !strings.Contains(c.Reason, fmt.Sprintf("generation %d ", gen.Generation)) {
		t.Errorf("component settings = %+v, want failed naming generation %d", c, gen.Generation)
	}
	st, err := g.d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(st.Warnings, "\n"); !strings.Contains(w, "local copy of settings") {
		t.Errorf("status warnings = %q, want the local copy that cannot be written", w)
	}
	if code, body := g.get(t, "/healthz"); code != http.StatusOK || !strings.Contains(body, `"degraded"`) || !strings.Contains(body, `"settings"`) {
		t.Errorf("/healthz = %d %s, want degraded naming settings", code, body)
	}

	if err := os.Remove(replica); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "TLSRPT.OrganizationName", "Copied"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, "copied", "test"); err != nil {
		t.Fatal(err)
	}
	if c := componentOf(t, g, "settings"); c.State != admin.ComponentRunning {
		t.Errorf("component settings once the copy is written again = %+v, want running", c)
	}
}
