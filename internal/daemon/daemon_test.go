package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
)

type gw struct {
	// printed is what the gateway printed for the administrator at first start (BootstrapOut).
	printed logtest.Buffer
	dir     string
	d       *daemon.Daemon
	n       *simnet.Net
	smtp    string
	events  chan delivery.Event
}

// newSimNet starts a simulated internet, closed at the end of the test.
func newSimNet(t *testing.T) *simnet.Net {
	t.Helper()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startGateway runs a gateway in n; edit, when given, changes its configuration first.
func startGateway(t *testing.T, n *simnet.Net, edit ...func(*config.Config)) *gw {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	return startGatewayWith(t, n, n.GatewayConfig(dir), n.RootPool(), edit...)
}

// startGatewayWith starts a gateway on cfg; a nil roots means the system pool plus tls.ca_file.
func startGatewayWith(t *testing.T, n *simnet.Net, cfg *config.Config, roots *x509.CertPool, edit ...func(*config.Config)) *gw {
	t.Helper()
	dir := cfg.Data.Dir
	cfg.Queue.RetryInitial = config.Duration(time.Hour)
	for _, e := range edit {
		e(cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{dir: dir, n: n, smtp: ln.Addr().String(), events: make(chan delivery.Event, 1000)}
	g.d, err = daemon.New(context.Background(), daemon.Options{BootstrapOut: &g.printed, Config: cfg, Roots: roots, SMTPListener: ln, AdminListener: aln,
		OnDelivery: func(ev delivery.Event) { g.events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return g
}

func (g *gw) nextEvent(t *testing.T, domain string) delivery.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-g.events:
			if ev.Domain.String() == domain {
				return ev
			}
		case <-timeout:
			t.Fatalf("no delivery event for %s", domain)
		}
	}
}

// waitSettled waits until the queue has recorded rcpt of msgID in a final state, failing after 30 s.
func waitSettled(t *testing.T, settled <-chan queue.Settled, msgID, rcpt string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case s := <-settled:
			if s.MsgID == msgID && s.Rcpt == rcpt {
				return
			}
		case <-timeout:
			t.Fatalf("%s of %s not recorded in a final state within 30 s", rcpt, msgID)
		}
	}
}

func sendOn(c *smtp.Client, rcpt, token string) error {
	if err := c.Mail("alice@sender.example", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: alice@sender.example\r\nTo: %s\r\nSubject: %s\r\n\r\ntoken %s\r\n", rcpt, token, token)
	return w.Close()
}

// A committed setting takes effect on the next delivery: with Sender.EnableMTASTS=false an enforce domain whose
// MX has an untrusted certificate gets its mail opportunistically.
func TestCommittedSettingTakesEffectOnNextDelivery(t *testing.T) {
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
	g := startGateway(t, n)
	c, err := smtp.Dial(g.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatal(err)
	}
	if ev := g.nextEvent(t, "example.com"); ev.Result.Outcome != "deferred" || ev.Result.ResultType != "certificate-not-trusted" {
		t.Fatalf("before the commit: %+v, want deferred certificate-not-trusted", ev.Result)
	}
	s := g.d.Settings()
	gen := s.Current().Generation
	if err := s.Set(context.Background(), "Sender.EnableMTASTS", "false"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), "disable MTA-STS while the receiver fixes its certificate", "test"); err != nil {
		t.Fatal(err)
	}
	if got := s.Current().Generation; got != gen+1 {
		t.Fatalf("generation = %d, want %d", got, gen+1)
	}
	// The same SMTP session goes on across the commit.
	if err := sendOn(c, "carol@example.com", "2"); err != nil {
		t.Fatalf("intake after the commit: %v", err)
	}
	ev := g.nextEvent(t, "example.com")
	if ev.Result.Outcome != "delivered" || ev.Plan != "opportunistic" || !strings.HasPrefix(ev.Result.TLS, "unverified") {
		t.Fatalf("after the commit: %+v (plan %s), want opportunistic delivery", ev.Result, ev.Plan)
	}
	if got := len(mx.Messages()); got != 1 {
		t.Errorf("MX has %d messages, want 1", got)
	}
}

// Settings commits during a delivery run drop no connection and lose no message.
func TestSettingsCommitsDuringDeliveryRun(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, n)
	const clients, per = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := smtp.Dial(g.smtp)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := 0; j < per; j++ {
				if err := sendOn(c, "bob@example.com", fmt.Sprintf("%d-%d", i, j)); err != nil {
					errs <- fmt.Errorf("client %d message %d: %w", i, j, err)
					return
				}
			}
			c.Quit()
		}(i)
	}
	stop := make(chan struct{})
	commits := make(chan int, 1)
	go func() {
		s := g.d.Settings()
		k := 0
		for {
			select {
			case <-stop:
				commits <- k
				return
			default:
			}
			v := "false"
			if k%2 == 1 {
				v = "true"
			}
			if err := s.Set(context.Background(), "TLSRPT.OnlyFailures", v); err == nil {
				if _, err := s.Commit(context.Background(), fmt.Sprintf("commit %d", k), "test"); err == nil {
					k++
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	k := <-commits
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := mx.WaitMessages(ctx, clients*per); err != nil {
		t.Fatalf("%v: %d of %d delivered", err, len(mx.Messages()), clients*per)
	}
	if k == 0 {
		t.Fatal("no commit happened during the run")
	}
	t.Logf("%d messages delivered over %d SMTP sessions across %d settings commits", clients*per, clients, k)
	for _, m := range mx.Messages() {
		if !m.TLS || m.TLSVersion < tls.VersionTLS12 {
			t.Fatalf("message delivered without TLS: %+v", m)
		}
	}
}
