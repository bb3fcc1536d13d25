package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/cli"
	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/simnet"
)

// runDaemon starts a gateway on cfg until the returned stop is called.
func runDaemon(t *testing.T, n *simnet.Net, cfg *config.Config, events chan delivery.Event) (d *daemon.Daemon, smtpAddr, adminAddr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err = daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard, Config: cfg, Roots: n.RootPool(),
		SMTPListener: ln, AdminListener: aln, OnDelivery: func(ev delivery.Event) { events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop = func() {
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
	return d, ln.Addr().String(), aln.Addr().String(), stop
}

// TestTraceAfterDeliveryAndRestart: a delivered message and a bounced one are found with `mxgate trace` by
// address and Message-ID, with their attempts, and still after the gateway restarts.
func TestTraceAfterDeliveryAndRestart(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10}); err != nil {
		t.Fatal(err)
	}
	n.DNS.SetNullMX("nomail.example")
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.GatewayConfig(dataDir)
	events := make(chan delivery.Event, 100)
	_, smtpAddr, adminAddr, stop := runDaemon(t, n, cfg, events)

	c, err := smtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"bob@example.com", "carol@nomail.example"} {
		if err := c.Mail("alice@sender.example", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "From: alice@sender.example\r\nMessage-ID: <trace-"+strings.Split(rcpt, "@")[0]+"@sender.example>\r\nSubject: t\r\n\r\nhi\r\n")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	c.Quit()
	seen := map[string]bool{}
	for timeout := time.After(30 * time.Second); !seen["example.com"] || !seen["nomail.example"]; {
		select {
		case ev := <-events:
			seen[ev.Domain.String()] = true
		case <-timeout:
			t.Fatalf("delivery events: %v", seen)
		}
	}

	tok, err := os.ReadFile(admin.TokenPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	trace := func(admin string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		// The message leaves the queue just after its delivery event: wait for it to be archived.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out.Reset()
			errb.Reset()
			code := cli.Main(append([]string{"--admin", admin, "--token", strings.TrimSpace(string(tok)), "trace"}, args...), &out, &errb)
			if code != 0 {
				t.Fatalf("trace %v: exit %d: %s", args, code, errb.String())
			}
			if !strings.HasPrefix(out.String(), "no finished message") || time.Now().After(deadline) {
				return out.String()
			}
		}
	}
	check := func(admin string) {
		t.Helper()
		out := trace(admin, "bob@example.com")
		for _, want := range []string{"message-id  <trace-bob@sender.example>", "from        alice@sender.example",
			"bob@example.com  delivered  1", "mx1.example.com"} {
			if !strings.Contains(out, want) {
				t.Errorf("trace bob@example.com:\n%s\nlacks %q", out, want)
			}
		}
		out = trace(admin, "trace-carol@sender.example")
		if !strings.Contains(out, "carol@nomail.example  failed") || !strings.Contains(out, "5.1.10") {
			t.Errorf("trace of the bounced message:\n%s", out)
		}
		// The bounce it caused went to alice: found by her address, beside her two messages.
		out = trace(admin, "--to", "alice@sender.example")
		if !strings.Contains(out, "(delivery status notification)") {
			t.Errorf("trace --to alice:\n%s\nlacks the bounce", out)
		}
	}
	check(adminAddr)

	stop()
	_, _, adminAddr, _ = runDaemon(t, n, cfg, events)
	check(adminAddr)
}
