package delivery_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
)

func listeners(aps ...netip.AddrPort) func() []netip.AddrPort {
	return func() []netip.AddrPort { return aps }
}

func addrPort(t *testing.T, r *simnet.Receiver) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func wantLoop(t *testing.T, r queue.Result, domain string) {
	t.Helper()
	if r.Outcome != queue.Deferred || r.Code != 451 || r.Enhanced != "4.4.6" || r.Text != "mail for "+domain+" loops back to myself" {
		t.Fatalf("result = %+v, want deferred 451 4.4.6 \"mail for %s loops back to myself\"", r, domain)
	}
}

// TestMXIsSelfByAddress_SMTP9: an MX host whose address and the delivery port are one of our listeners is
// this gateway under another name: it and every MX of the same or a worse preference are dropped, and better
// ones are still tried.
func TestMXIsSelfByAddress_SMTP9(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	self := h.mx("example.com", "gw.example.com", 20, simnet.MXOptions{})
	mx3 := h.mx("example.com", "mx3.example.com", 30, simnet.MXOptions{})
	h.d.Listeners = listeners(addrPort(t, self))

	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || r.RemoteMTA != "mx1.example.com" {
		t.Fatalf("result = %+v, want delivered by mx1, the MX better than ours", r)
	}
	mx1.Stop()
	r = one(t, h.deliver("example.com", job("m2", "bob@example.com")))
	if r.Outcome != queue.Deferred || r.RemoteMTA != "mx1.example.com" {
		t.Fatalf("result = %+v, want deferred at mx1: the MXs from ours on are never tried", r)
	}
	if n, m := self.Connections(), mx3.Connections(); n != 0 || m != 0 {
		t.Fatalf("connections: ours %d, mx3 %d; want none (RFC 5321 Section 5.1)", n, m)
	}
}

// TestMXIsSelfDefersThenLoopText_SMTP9: with no MX better than ours, the mail is deferred as a loop, the
// same way whether the MX is us by name or by address and port, and nothing is sent.
func TestMXIsSelfDefersThenLoopText_SMTP9(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	self := h.mx("loop.example", "gw.loop.example", 10, simnet.MXOptions{})
	backup := h.mx("loop.example", "backup.loop.example", 20, simnet.MXOptions{})

	t.Run("address", func(t *testing.T) {
		h.d.Listeners, h.d.LocalNames = listeners(addrPort(t, self)), nil
		wantLoop(t, one(t, h.deliver("loop.example", job("m1", "bob@loop.example"))), "loop.example")
	})
	t.Run("name", func(t *testing.T) {
		h.d.Listeners, h.d.LocalNames = nil, []string{"GW.loop.example."}
		wantLoop(t, one(t, h.deliver("loop.example", job("m2", "bob@loop.example"))), "loop.example")
	})
	t.Run("wildcard listener", func(t *testing.T) {
		// A listener on 0.0.0.0 takes every local address, and every loopback address is local.
		wild := netip.AddrPortFrom(netip.IPv4Unspecified(), addrPort(t, self).Port())
		h.d.Listeners, h.d.LocalNames = listeners(wild), nil
		h.d.InterfaceAddrs = func() ([]netip.Addr, error) { return nil, nil }
		wantLoop(t, one(t, h.deliver("loop.example", job("m3", "bob@loop.example"))), "loop.example")
	})
	if n, m := self.Connections(), backup.Connections(); n != 0 || m != 0 {
		t.Fatalf("connections: ours %d, backup %d; want none", n, m)
	}
}

// TestSameHostOtherPortIsNotLoop: an MTA on one of our addresses but another port (an internal MTA on the
// same host) is not us.
func TestSameHostOtherPortIsNotLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{})
	ap := addrPort(t, mx1)
	h.d.Listeners = listeners(netip.AddrPortFrom(ap.Addr(), ap.Port()+1), netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port()+1))
	r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
	if r.Outcome != queue.Delivered || len(mx1.Messages()) != 1 {
		t.Fatalf("result = %+v, want delivered to the MTA on the other port", r)
	}
}

// TestRouteToSelfIsLoop: a static route whose host is one of our own listeners would hand the mail back to
// us; it is deferred as a loop and nothing is sent.
func TestRouteToSelfIsLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	relay, err := h.n.AddSMTPHost("relay.corp.test", simnet.MXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.routes = []delivery.Route{{Domains: []string{"corp.test"}, Hosts: []string{"relay.corp.test"}}}
	h.d.Listeners = listeners(addrPort(t, relay))
	r := one(t, h.deliver("corp.test", job("m1", "bob@corp.test")))
	wantLoop(t, r, "corp.test")
	if relay.Connections() != 0 {
		t.Fatal("the relay that is us got a connection")
	}
	if !strings.Contains(r.RemoteMTA, "relay.corp.test") {
		t.Errorf("RemoteMTA = %q, want the route host", r.RemoteMTA)
	}
}
