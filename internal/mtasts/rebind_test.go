package mtasts

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testenv"
)

// rogueListener accepts TCP connections on ip:port and counts them: a stand-in for an internal service a
// rebinding attacker wants the policy fetcher to reach.
func rogueListener(t *testing.T, ip string, port int) *atomic.Int64 {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		testenv.MissingDependency(t, "cannot listen on %s:%d for the rogue service: %v", ip, port, err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return &n
}

// rebindingLookup answers the policy host's name with answers[0] on the first lookup, answers[1] on the
// second, and so on (the last answer repeats), like a DNS server with TTL 0 run by an attacker.
type rebindingLookup struct {
	mu      sync.Mutex
	answers [][]netip.Addr
	calls   int
}

func (r *rebindingLookup) LookupIP(context.Context, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.answers[min(r.calls, len(r.answers)-1)]
	r.calls++
	return a, nil
}

func (r *rebindingLookup) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// DNS rebinding: the policy host's name first resolves to the (allowlisted, here: 127.0.0.1/32 stands for
// a public address) policy server, then to an internal address. The client checks the resolved address on
// every connection (keep-alives are off, so every fetch dials), so the second fetch is refused with
// ErrForbiddenAddress before any packet goes to the internal address, and nothing reaches the rogue
// service listening there. The same client carries TLS report POSTs, which are refused the same way.
func TestFetchDNSRebindingCheckedOnEveryConnection(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ps := newPolicyServer(t, p, serverConfig{})
	rogue := rogueListener(t, "127.0.0.2", ps.port)
	t.Cleanup(func() {
		if n := rogue.Load(); n != 0 {
			t.Errorf("the rogue internal service got %d connections", n)
		}
	})
	public := netip.MustParseAddr("127.0.0.1")
	internal := []string{
		"127.0.0.2",        // loopback
		"::ffff:127.0.0.2", // IPv4-mapped loopback
		"0.0.0.0",          // unspecified: dialling it reaches this host
		"::",               // unspecified, IPv6
		"10.1.2.3",         // private
		"169.254.169.254",  // link-local (cloud metadata)
		"::ffff:169.254.169.254",
		"100.64.0.1", // CGNAT
		"fd00::1",    // ULA
		"fe80::1",    // IPv6 link-local
	}
	// The subtests share the policy server and count its handshakes, so they run one after another.
	for _, bad := range internal {
		t.Run(bad, func(t *testing.T) {
			lookup := &rebindingLookup{answers: [][]netip.Addr{{public}, {netip.MustParseAddr(bad)}}}
			o := loopbackOptions(ps.port, p.trusted.Pool())
			o.LookupIP = lookup.LookupIP
			o.CheckAddr = PublicOnly([]netip.Prefix{netip.PrefixFrom(public, 32)})
			var dialled atomic.Int64
			check := o.CheckAddr
			o.CheckAddr = func(a netip.Addr) error { dialled.Add(1); return check(a) }
			client := NewHTTPClient(o)
			f := &Fetcher{Client: client, Timeout: 10 * time.Second}

			if _, _, err := fetchExample(t, f); err != nil {
				t.Fatalf("first fetch (public address): %v", err)
			}
			snis, _ := ps.requests()
			before := len(snis)
			_, _, err := fetchExample(t, f)
			if !errors.Is(err, ErrFetch) || !errors.Is(err, ErrForbiddenAddress) {
				t.Fatalf("fetch after rebinding to %s: %v, want ErrFetch and ErrForbiddenAddress", bad, err)
			}
			// A TLS report POST with the same client, name now rebound.
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+policyHost+"/report", bytes.NewReader([]byte("{}")))
			if err != nil {
				t.Fatal(err)
			}
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				t.Errorf("report POST after rebinding to %s went through: %s", bad, resp.Status)
			} else if !errors.Is(err, ErrForbiddenAddress) {
				t.Errorf("report POST after rebinding: %v, want ErrForbiddenAddress", err)
			}
			if got := lookup.count(); got != 3 {
				t.Errorf("%d lookups for 3 connections, want one per connection", got)
			}
			if got := dialled.Load(); got != 3 {
				t.Errorf("CheckAddr called %d times for 3 connections, want 3", got)
			}
			if snis, _ := ps.requests(); len(snis) != before {
				t.Errorf("policy server saw %d more handshakes after rebinding", len(snis)-before)
			}
		})
	}
}

// A name that resolves to internal and public addresses at once: the internal ones are skipped (never
// dialled), the public one is used. With only internal addresses the fetch fails as forbidden.
func TestFetchMixedAnswersSkipInternal(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	ps := newPolicyServer(t, p, serverConfig{})
	rogue := rogueListener(t, "127.0.0.3", ps.port)
	mixed := []netip.Addr{
		netip.MustParseAddr("127.0.0.3"),
		netip.MustParseAddr("::ffff:127.0.0.3"),
		netip.MustParseAddr("192.168.0.1"),
		netip.MustParseAddr("127.0.0.1"), // the allowlisted policy server
	}
	o := loopbackOptions(ps.port, p.trusted.Pool())
	o.CheckAddr = PublicOnly([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	o.LookupIP = func(context.Context, string) ([]netip.Addr, error) { return mixed, nil }
	if _, _, err := fetchExample(t, &Fetcher{Client: NewHTTPClient(o)}); err != nil {
		t.Fatalf("fetch with mixed answers: %v", err)
	}
	o.LookupIP = func(context.Context, string) ([]netip.Addr, error) { return mixed[:3], nil }
	_, _, err := fetchExample(t, &Fetcher{Client: NewHTTPClient(o)})
	if !errors.Is(err, ErrFetch) || !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("fetch with only internal answers: %v, want ErrFetch and ErrForbiddenAddress", err)
	}
	if n := rogue.Load(); n != 0 {
		t.Errorf("the rogue internal service got %d connections", n)
	}
}
