package daemon_test

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/simnet"
)

// TestRouteAuthSecretNeverLogged: a gateway routing to a relay that requires AUTH authenticates with the
// configured credentials, and neither a rejected nor an accepted password appears in its logs, in any
// encoding AUTH uses.
func TestRouteAuthSecretNeverLogged(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	const good, bad = "relay-Secret-1", "relay-Wrong-2"
	relay, err := n.AddSMTPHost("relay.corp.test", simnet.MXOptions{Users: map[string]string{"gw": good}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	run := func(password string) delivery.Event {
		cfg := n.GatewayConfig(filepath.Join(t.TempDir(), "data"))
		cfg.Queue.RetryInitial = config.Duration(time.Hour)
		cfg.Routes = []config.Route{{Domains: []string{"corp.test"}, Hosts: []string{"relay.corp.test"}, Port: n.SMTPPort,
			TLS: "opportunistic", AuthUser: "gw", AuthPassword: password, AuthMinTLS: "required-verify"}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		aln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		events := make(chan delivery.Event, 10)
		d, err := daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard, Config: cfg, Roots: n.RootPool(),
			SMTPListener: ln, AdminListener: aln, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			OnDelivery: func(ev delivery.Event) { events <- ev }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		c, err := smtp.Dial(ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := sendOn(c, "bob@corp.test", "auth"); err != nil {
			t.Fatal(err)
		}
		return (&gw{events: events}).nextEvent(t, "corp.test")
	}
	if ev := run(bad); ev.Result.Outcome != "deferred" || ev.Result.Code != 535 {
		t.Fatalf("wrong password: %+v, want deferred with the relay's 535", ev.Result)
	}
	if ev := run(good); ev.Result.Outcome != "delivered" {
		t.Fatalf("right password: %+v, want delivered", ev.Result)
	}
	if m := relay.Messages(); len(m) != 1 || m[0].AuthUser != "gw" {
		t.Fatalf("relay got %+v, want one authenticated message", m)
	}
	text := logs.String()
	if !strings.Contains(text, `"msg":"delivery"`) {
		t.Fatalf("no delivery events logged:\n%s", text)
	}
	for _, pw := range []string{good, bad} {
		for _, form := range []string{pw, base64.StdEncoding.EncodeToString([]byte(pw)),
			base64.StdEncoding.EncodeToString([]byte("\x00gw\x00" + pw))} {
			if strings.Contains(text, form) {
				t.Errorf("the logs contain the AUTH secret (%q):\n%s", form, text)
			}
		}
	}
}
