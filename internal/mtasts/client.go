package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// ClientOptions configure NewHTTPClient.
type ClientOptions struct {
	// LookupIP resolves the policy host to addresses, tried in the order returned. It must be set: the
	// client never falls back to Go's resolver, so that policy hosts are resolved like everything else.
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// Port overrides the TCP port of every connection; 0 means the URL's port (443). Tests and labs set it.
	Port int
	// RootCAs are the trusted roots; nil means the system pool.
	RootCAs *x509.CertPool
	// CheckAddr, if set, is called for every address right before it is dialled; an error skips that
	// address. Use PublicOnly to keep fetches away from internal networks.
	CheckAddr func(netip.Addr) error
	// Timeout bounds a whole request including the body (http.Client.Timeout); 0 means no limit beyond the
	// context.
	Timeout time.Duration
}

// maxHeaderBytes bounds the response header a policy host can make us read.
const maxHeaderBytes = 64 << 10

// NewHTTPClient returns an HTTP client for policy fetches: names resolved with o.LookupIP, TLS 1.2 or later
// with SNI set to the policy host (by net/http, from the URL), no proxy, no keep-alive, no transparent
// decompression, and redirects returned to the caller instead of followed (RFC 8461 Section 3.3).
func NewHTTPClient(o ClientOptions) *http.Client {
	dialer := &net.Dialer{}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialHost(ctx, dialer, o, network, addr)
		},
		TLSClientConfig: &tls.Config{
			// RFC 8461 Section 7.2: TLS 1.2 or later; RFC 7525 Section 3.1.1 rules out older versions.
			MinVersion: tls.VersionTLS12,
			RootCAs:    o.RootCAs,
		},
		TLSHandshakeTimeout:    o.Timeout,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	return &http.Client{
		Transport: tr,
		// RFC 8461 Section 3.3: redirects MUST NOT be followed; the 3xx response is returned as is and the
		// fetch fails on its status.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       o.Timeout,
	}
}

func dialHost(ctx context.Context, d *net.Dialer, o ClientOptions, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", portStr, err)
	}
	if o.Port != 0 {
		port = o.Port
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if o.LookupIP == nil {
			return nil, fmt.Errorf("resolve %s: no LookupIP configured", host)
		}
		ips, err = o.LookupIP(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	var errs []error
	for _, ip := range ips {
		if o.CheckAddr != nil {
			if err := o.CheckAddr(ip); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// PublicOnly returns a CheckAddr function that refuses addresses a policy host on the public internet never
// has: unspecified, loopback, private (RFC 1918 and RFC 4193 ULA), link-local, shared address space
// 100.64.0.0/10 (RFC 6598), 0.0.0.0/8, multicast and the IPv4 broadcast address, including the IPv4-mapped
// IPv6 forms of these. Addresses inside one of the allow prefixes are accepted regardless. Refusals wrap
// ErrForbiddenAddress.
func PublicOnly(allow []netip.Prefix) func(netip.Addr) error {
	allow = append([]netip.Prefix(nil), allow...)
	cgnat := netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork := netip.MustParsePrefix("0.0.0.0/8")
	broadcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	return func(a netip.Addr) error {
		if !a.IsValid() {
			return fmt.Errorf("%w: invalid address", ErrForbiddenAddress)
		}
		u := a.Unmap().WithZone("")
		for _, p := range allow {
			if p.Contains(a.WithZone("")) || p.Contains(u) {
				return nil
			}
		}
		var why string
		switch {
		case u.IsUnspecified():
			why = "unspecified"
		case u.IsLoopback():
			why = "loopback"
		case u.IsPrivate():
			why = "private"
		case u.IsLinkLocalUnicast(), u.IsLinkLocalMulticast():
			why = "link-local"
		case u.IsMulticast():
			why = "multicast"
		case cgnat.Contains(u):
			why = "shared address space (RFC 6598)"
		case thisNetwork.Contains(u):
			why = "\"this network\" (0.0.0.0/8)"
		case u == broadcast:
			why = "broadcast"
		default:
			return nil
		}
		return fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, a, why)
	}
}
