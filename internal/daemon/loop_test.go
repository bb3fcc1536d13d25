package daemon_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/simnet"
)

// TestMXOnOwnListenerIsLoop: a gateway whose SMTP listener is the best MX of a domain (by address and the
// delivery port, under a name that is not its own) defers that domain's mail as a loop and never connects to
// itself or to the worse MX; another domain is delivered as usual.
func TestMXOnOwnListenerIsLoop(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ip, err := n.AllocIP()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(n.SMTPPort)).String())
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddA("inbound.loop.example", ip)
	n.DNS.AddMX("loop.example", "inbound.loop.example", 10)
	backup, err := n.AddMX(simnet.MXOptions{Domain: "loop.example", Host: "backup.loop.example", Pref: 20})
	if err != nil {
		t.Fatal(err)
	}
	other, err := n.AddMX(simnet.MXOptions{Domain: "fine.example", Host: "mx.fine.example", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}

	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan delivery.Event, 10)
	d, err := daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard,
		Config: n.GatewayConfig(filepath.Join(t.TempDir(), "data")), Roots: n.RootPool(),
		SMTPListener: ln, AdminListener: aln, OnDelivery: func(ev delivery.Event) { events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	c, err := smtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := &gw{events: events}
	if err := sendOn(c, "bob@loop.example", "loop"); err != nil {
		t.Fatal(err)
	}
	ev := g.nextEvent(t, "loop.example")
	if r := ev.Result; r.Outcome != "deferred" || r.Enhanced != "4.4.6" || !strings.Contains(r.Text, "mail for loop.example loops back to myself") {
		t.Fatalf("loop.example: %+v, want deferred 4.4.6 loops back to myself", r)
	}
	if backup.Connections() != 0 {
		t.Errorf("the worse MX got %d connections, want none", backup.Connections())
	}
	if err := sendOn(c, "carol@fine.example", "fine"); err != nil {
		t.Fatal(err)
	}
	if ev := g.nextEvent(t, "fine.example"); ev.Result.Outcome != "delivered" || len(other.Messages()) != 1 {
		t.Fatalf("fine.example: %+v, want delivered", ev.Result)
	}
}
