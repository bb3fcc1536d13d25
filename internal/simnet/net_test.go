package simnet

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDefaultPorts(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	wantSMTP, wantHTTPS, wantDNS := 10025, 10443, "10053"
	if os.Geteuid() == 0 {
		wantSMTP, wantHTTPS, wantDNS = 25, 443, "53"
	}
	host, port, err := net.SplitHostPort(n.DNSAddr)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr(host)
	if n.SMTPPort != wantSMTP || n.HTTPSPort != wantHTTPS || port != wantDNS {
		t.Errorf("ports SMTP %d HTTPS %d DNS %s, want %d %d %s", n.SMTPPort, n.HTTPSPort, port, wantSMTP, wantHTTPS, wantDNS)
	}
	b := ip.As4()
	if b[0] != 127 || b[1] == 0 || b[1] == 255 || b[2] == 0 || b[2] == 255 || b[3] != 1 || !n.Block.Contains(ip) {
		t.Errorf("DNSAddr %s, Block %s: want 127.X.Y.1 inside the block, X and Y in 1..254", n.DNSAddr, n.Block)
	}
}

func TestExplicitPorts(t *testing.T) {
	t.Parallel()
	n, err := New(Options{SMTPPort: 2525, HTTPSPort: 8443, DNSPort: 5353})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	r, err := n.AddSMTPHost("relay.test", MXOptions{STARTTLS: NotOffered})
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.AddrPortFrom(r.IP(), 2525).String(); r.Addr() != want {
		t.Errorf("Addr = %s, want %s", r.Addr(), want)
	}
	// DialContext maps the well-known SMTP port to the Net's.
	c, err := n.DialContext(waitCtx(t), "tcp", "relay.test:25")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := r.WaitConnections(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if _, port, _ := net.SplitHostPort(n.DNSAddr); port != "5353" {
		t.Errorf("DNSAddr %s, want port 5353", n.DNSAddr)
	}
}

// TestTwoNetsInParallel shows that Nets do not share addresses, records or receivers.
func TestTwoNetsInParallel(t *testing.T) {
	t.Parallel()
	a, b := newNet(t), newNet(t)
	if a.Block == b.Block || a.DNSAddr == b.DNSAddr {
		t.Fatalf("two Nets share block %s / DNS %s", a.Block, a.DNSAddr)
	}
	ra, err := a.AddMX(MXOptions{Domain: "example.com", Host: "mx1.example.com", STARTTLS: NotOffered})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.AddMX(MXOptions{Domain: "example.com", Host: "mx1.example.com", STARTTLS: NotOffered})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n    *Net
		want netip.Addr
	}{{a, ra.IP()}, {b, rb.IP()}} {
		m, err := exchange(t, tt.n, "udp", "mx1.example.com", dns.TypeA, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != tt.want.String() {
			t.Errorf("Net %s: A mx1.example.com = %v, want %v", tt.n.Block, m.Answer, tt.want)
		}
	}
	c := dialText(t, ra.Addr())
	cmdExpect(t, c, 221, "QUIT")
	if err := ra.WaitConnections(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if got := rb.Connections(); got != 0 {
		t.Errorf("other Net's receiver saw %d connections", got)
	}
}

func TestAllocIPRefusesConnections(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	ip, err := n.AllocIP()
	if err != nil {
		t.Fatal(err)
	}
	if !n.Block.Contains(ip) {
		t.Errorf("AllocIP %s outside %s", ip, n.Block)
	}
	n.DNS.AddA("dead.example.com", ip)
	if c, err := n.DialContext(waitCtx(t), "tcp", "dead.example.com:25"); err == nil {
		c.Close()
		t.Errorf("dial to an allocated but unserved address succeeded")
	}
	if _, err := n.DialContext(waitCtx(t), "tcp", "unknown.example.com:25"); err == nil {
		t.Errorf("dial to a name without address succeeded")
	}
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	t.Parallel()
	n, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := n.AddMX(MXOptions{Domain: "example.com", Host: "mx1.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.ServeMTASTSPolicy("example.com", policyENF)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, addr := range []string{r.Addr(), p.Addr(), n.DNSAddr} {
		if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
	if _, err := n.AddMX(MXOptions{Domain: "example.org", Host: "mx.example.org"}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddMX after Close: %v, want ErrClosed", err)
	}
	if err := r.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	if _, err := n.AllocIP(); !errors.Is(err, ErrClosed) {
		t.Errorf("AllocIP after Close: %v, want ErrClosed", err)
	}
}

// TestHostSkipsAddressInUse shows that a host address taken by someone else (another process that picked the
// same block) is skipped.
func TestHostSkipsAddressInUse(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	taken := n.Block.Addr().Next().Next() // .2, the first host address
	ln, err := net.Listen("tcp", netip.AddrPortFrom(taken, uint16(n.SMTPPort)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r, err := n.AddSMTPHost("relay.test", MXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := taken.Next(); r.IP() != want {
		t.Errorf("IP = %s, want %s", r.IP(), want)
	}
}
