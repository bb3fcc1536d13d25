package simnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/testpki"
)

// ErrClosed is returned by operations on a Net after Close.
var ErrClosed = errors.New("simnet: closed")

// Options configure a Net. The zero value is usable.
type Options struct {
	// Now is the clock for certificate validity and recorded timestamps; nil means time.Now.
	Now func() time.Time
	// SMTPPort, HTTPSPort and DNSPort default to 25, 443 and 53 when running as root, else 10025, 10443 and
	// 10053.
	SMTPPort, HTTPSPort, DNSPort int
}

// Net is one simulated internet. Its methods are safe for concurrent use.
type Net struct {
	// Block is the /24 of loopback addresses this Net owns.
	Block netip.Prefix
	// DNSAddr is the DNS server's "127.X.Y.1:port", for the gateway's resolver configuration.
	DNSAddr string
	// SMTPPort and HTTPSPort are the ports every SMTP and HTTPS host of this Net listens on.
	SMTPPort, HTTPSPort int
	// TrustedCA is the root the gateway trusts in tests (see RootPool); EvilCA is a root nobody trusts.
	TrustedCA, EvilCA *testpki.CA
	// DNS is the authoritative DNS server's data.
	DNS *DNS

	now     func() time.Time
	dnsPort int
	wg      sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	nextIP  int
	closers []func()
}

// New starts a Net: it picks a free loopback block, creates the test CAs and starts the DNS server.
func New(opts Options) (*Net, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	root := os.Geteuid() == 0
	defPort := func(p, privileged, unprivileged int) int {
		switch {
		case p != 0:
			return p
		case root:
			return privileged
		default:
			return unprivileged
		}
	}
	n := &Net{
		SMTPPort:  defPort(opts.SMTPPort, 25, 10025),
		HTTPSPort: defPort(opts.HTTPSPort, 443, 10443),
		now:       opts.Now,
		dnsPort:   defPort(opts.DNSPort, 53, 10053),
		nextIP:    2,
	}
	n.DNS = newDNS()
	var err error
	if n.TrustedCA, err = testpki.NewCA("simnet TestRoot", opts.Now); err != nil {
		return nil, fmt.Errorf("simnet: %w", err)
	}
	if n.EvilCA, err = testpki.NewCA("simnet EvilRoot", opts.Now); err != nil {
		return nil, fmt.Errorf("simnet: %w", err)
	}
	if err := n.startDNS(); err != nil {
		return nil, err
	}
	return n, nil
}

// startDNS claims a random block by binding its .1 address for DNS, retrying on another block when taken.
func (n *Net) startDNS() error {
	const tries = 64
	var lastErr error
	for range tries {
		block := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(1 + rand.IntN(254)), 0})
		addr := netip.AddrPortFrom(block.Next(), uint16(n.dnsPort)).String()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				lastErr = err
				continue
			}
			return fmt.Errorf("simnet: DNS server: %w", err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			if errors.Is(err, syscall.EADDRINUSE) {
				lastErr = err
				continue
			}
			return fmt.Errorf("simnet: DNS server: %w", err)
		}
		n.Block = netip.PrefixFrom(block, 24)
		n.DNSAddr = addr
		for _, srv := range []*dns.Server{
			{PacketConn: pc, Handler: n.DNS},
			{Listener: ln, Handler: n.DNS},
		} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			n.wg.Go(func() { _ = srv.ActivateAndServe() })
			<-started
			n.closers = append(n.closers, func() { _ = srv.Shutdown() })
		}
		return nil
	}
	return fmt.Errorf("simnet: no free loopback block after %d tries: %w", tries, lastErr)
}

// Close stops every server of the Net. It is idempotent.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	closers := n.closers
	n.closers = nil
	n.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	n.wg.Wait()
	return nil
}

// onClose registers f to run at Close; it fails when the Net is already closed.
func (n *Net) onClose(f func()) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	n.closers = append(n.closers, f)
	return nil
}

// spawn runs fs as goroutines that Close waits for, unless the Net is closed. Checking and adding under n.mu
// keeps every wg.Add before Close's wg.Wait.
func (n *Net) spawn(fs ...func()) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	for _, f := range fs {
		n.wg.Go(f)
	}
	return nil
}

// Now returns the Net's clock reading.
func (n *Net) Now() time.Time { return n.now() }

// RootPool returns a pool holding only TrustedCA, the trust store the gateway uses in tests.
func (n *Net) RootPool() *x509.CertPool { return n.TrustedCA.Pool() }

// IssueCert issues a certificate for names from TrustedCA, valid now.
func (n *Net) IssueCert(names ...string) (*tls.Certificate, error) {
	c, err := n.TrustedCA.Issue(testpki.Leaf{DNSNames: names})
	if err != nil {
		return nil, fmt.Errorf("simnet: %w", err)
	}
	return &c, nil
}

// AllocIP reserves the next free address of the block without listening on it, so connections to it are
// refused (a dead MX address).
func (n *Net) AllocIP() (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return netip.Addr{}, ErrClosed
	}
	return n.allocLocked()
}

func (n *Net) allocLocked() (netip.Addr, error) {
	if n.nextIP > 254 {
		return netip.Addr{}, fmt.Errorf("simnet: block %s exhausted", n.Block)
	}
	b := n.Block.Addr().As4()
	b[3] = byte(n.nextIP)
	n.nextIP++
	return netip.AddrFrom4(b), nil
}

// listen allocates an address of the block and listens on it at port, skipping addresses in use (by another
// process that happened to pick the same block).
func (n *Net) listen(port int) (net.Listener, netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, netip.Addr{}, ErrClosed
	}
	for {
		ip, err := n.allocLocked()
		if err != nil {
			return nil, netip.Addr{}, err
		}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(port)).String())
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		if err != nil {
			return nil, netip.Addr{}, fmt.Errorf("simnet: listen: %w", err)
		}
		return ln, ip, nil
	}
}

// DialContext dials addr ("host:port") inside the Net: host names are looked up in the Net's zone data
// directly (following CNAMEs, without the query log or injected failures), and the well-known ports 25, 443
// and 53 are mapped to the Net's SMTPPort, HTTPSPort and DNS port. It suits http.Transport.DialContext.
func (n *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("simnet: dial %s: %w", addr, err)
	}
	switch port {
	case "25", "smtp":
		port = strconv.Itoa(n.SMTPPort)
	case "443", "https":
		port = strconv.Itoa(n.HTTPSPort)
	case "53", "domain":
		port = strconv.Itoa(n.dnsPort)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips := n.DNS.lookupHost(host)
		if len(ips) == 0 {
			return nil, fmt.Errorf("simnet: dial %s: no address for %q", addr, host)
		}
		ip = ips[0]
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
	if err != nil {
		return nil, fmt.Errorf("simnet: %w", err)
	}
	return c, nil
}

// HTTPClient returns a client that trusts TrustedCA, reaches hosts through DialContext and uses no proxy.
func (n *Net) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:       n.DialContext,
			TLSClientConfig:   &tls.Config{RootCAs: n.RootPool()},
			DisableKeepAlives: true,
		},
	}
}

// signal is a broadcast: waiters take ch under their owner's lock and block on it; broadcast closes it.
type signal struct{ ch chan struct{} }

func (s *signal) wait() <-chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) broadcast() {
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// waitFor blocks until cond (evaluated under mu) holds or ctx is done. cond reports a progress string for the
// error message.
func waitFor(ctx context.Context, mu *sync.Mutex, sig *signal, cond func() (bool, string)) error {
	for {
		mu.Lock()
		ok, progress := cond()
		ch := sig.wait()
		mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("simnet: waiting for %s: %w", progress, ctx.Err())
		}
	}
}
