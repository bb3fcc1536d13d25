package delivery

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/queue"
)

// loopResult is the outcome when every MX host of domain is this gateway, by name (Deliverer.LocalNames) or
// by address and port (Deliverer.Listeners). Like Postfix, it is deferred rather than bounced at once: a
// DNS or configuration change can end the loop. The queue turns it into a 5.4.6 bounce at expiry.
func loopResult(domain string) queue.Result {
	return deferred(451, "4.4.6", fmt.Sprintf("mail for %s loops back to myself", domain))
}

// selfCheck tells whether an address and port reach one of our own SMTP listeners.
type selfCheck struct {
	listeners []netip.AddrPort
	// local are the addresses of this host's interfaces, for listeners on an unspecified address.
	local map[netip.Addr]bool
}

// selfCheck returns the check for delivery port port, or nil when no listener uses that port: then no
// address can be us, and no address is looked up early.
func (d *Deliverer) selfCheck(port int) *selfCheck {
	if d.Listeners == nil {
		return nil
	}
	var c selfCheck
	wildcard := false
	for _, l := range d.Listeners() {
		if int(l.Port()) != port {
			continue
		}
		l = netip.AddrPortFrom(l.Addr().Unmap(), l.Port())
		c.listeners = append(c.listeners, l)
		wildcard = wildcard || l.Addr().IsUnspecified()
	}
	if len(c.listeners) == 0 {
		return nil
	}
	if wildcard {
		c.local = map[netip.Addr]bool{}
		addrs := d.InterfaceAddrs
		if addrs == nil {
			addrs = interfaceAddrs
		}
		// An error leaves the set empty: loopback addresses are still recognised below, and a missed loop
		// ends at the receiving side's hop count (RFC 5321 Section 6.3) rather than stopping all mail.
		ips, _ := addrs()
		for _, ip := range ips {
			c.local[ip.Unmap()] = true
		}
	}
	return &c
}

// is reports whether ip (on the delivery port) is one of our listeners. A listener on 0.0.0.0 takes every
// local IPv4 address, one on :: every local address; every loopback address is local on any host.
func (c *selfCheck) is(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, l := range c.listeners {
		la := l.Addr()
		switch {
		case la == ip:
			return true
		case la.IsUnspecified() && (la.Is6() || ip.Is4()):
			if ip.IsLoopback() || c.local[ip] {
				return true
			}
		}
	}
	return false
}

// dropSelf applies RFC 5321 Section 5.1 (SMTP-9) by address: an MX host with an address that is one of our
// own listeners is us under another name, so it and every host of the same or a higher preference number are
// dropped. The addresses looked up here are kept on the targets, so that each host is looked up once.
func (d *Deliverer) dropSelf(ctx context.Context, hosts []mx.Host, port int) ([]target, bool) {
	ts := make([]target, 0, len(hosts))
	self := d.selfCheck(port)
	lowest, found := uint16(0), false
	for _, h := range hosts {
		t := target{name: h.Name, port: port, pref: h.Pref, implicit: h.Implicit}
		if self != nil && (!found || h.Pref < lowest) {
			t.addrs, t.addrRes, t.addrErr = mx.AddressesResult(ctx, d.Resolver, h.Name)
			t.resolved = true
			for _, ip := range t.addrs {
				if self.is(ip) {
					lowest, found = h.Pref, true
					break
				}
			}
		}
		ts = append(ts, t)
	}
	if !found {
		return ts, true
	}
	keep := ts[:0]
	for _, t := range ts {
		if t.pref < lowest {
			keep = append(keep, t)
		}
	}
	return keep, len(keep) > 0
}

func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}
