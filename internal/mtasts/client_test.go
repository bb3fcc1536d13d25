package mtasts

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/netip"
	"testing"
)

func TestPublicOnly(t *testing.T) {
	t.Parallel()
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00:1::/64")}
	tests := []struct {
		addr      string
		wantAllow bool // with the allow list
		wantPlain bool // with PublicOnly(nil)
	}{
		{"192.0.2.80", true, true},
		{"8.8.8.8", true, true},
		{"2001:db8::80", true, true},
		{"2a00:1450::1", true, true},
		{"127.0.0.1", true, false},
		{"127.1.2.3", true, false},
		{"::1", false, false},
		{"::ffff:127.0.0.1", true, false},
		{"10.1.2.3", false, false},
		{"172.16.0.1", false, false},
		{"172.31.255.255", false, false},
		{"172.32.0.1", true, true},
		{"192.168.1.1", false, false},
		{"::ffff:10.0.0.1", false, false},
		{"::ffff:192.168.0.1", false, false},
		{"fc00::1", false, false},
		{"fd00:1::5", true, false},
		{"fd00:2::5", false, false},
		{"169.254.169.254", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"fe80::1%eth0", false, false},
		{"100.64.0.1", false, false},
		{"100.127.255.255", false, false},
		{"100.128.0.1", true, true},
		{"::ffff:100.64.0.1", false, false},
		{"0.0.0.0", false, false},
		{"0.1.2.3", false, false},
		{"::", false, false},
		{"::ffff:0.0.0.0", false, false},
		{"224.0.0.1", false, false},
		{"239.1.2.3", false, false},
		{"ff02::1", false, false},
		{"ff0e::1", false, false},
		{"255.255.255.255", false, false},
	}
	withAllow, plain := PublicOnly(allow), PublicOnly(nil)
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		for _, c := range []struct {
			name  string
			check func(netip.Addr) error
			want  bool
		}{{"allow", withAllow, tt.wantAllow}, {"nil", plain, tt.wantPlain}} {
			err := c.check(a)
			if got := err == nil; got != c.want {
				t.Errorf("PublicOnly(%s)(%s) = %v, want allowed=%v", c.name, tt.addr, err, c.want)
			}
			if err != nil && !errors.Is(err, ErrForbiddenAddress) {
				t.Errorf("PublicOnly(%s)(%s) error %v does not wrap ErrForbiddenAddress", c.name, tt.addr, err)
			}
		}
	}
	if err := plain(netip.Addr{}); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("zero address: %v, want ErrForbiddenAddress", err)
	}
}

func TestPublicOnlyCopiesAllowList(t *testing.T) {
	t.Parallel()
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	check := PublicOnly(allow)
	allow[0] = netip.MustParsePrefix("192.168.0.0/16")
	if err := check(netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Errorf("allow list changed after PublicOnly returned: %v", err)
	}
}

func TestNewHTTPClient_STS29_STS37(t *testing.T) {
	t.Parallel()
	c := NewHTTPClient(ClientOptions{})
	if c.CheckRedirect == nil {
		t.Fatal("CheckRedirect is nil; the default follows redirects")
	}
	if err := c.CheckRedirect(nil, nil); !errors.Is(err, http.ErrUseLastResponse) {
		t.Errorf("CheckRedirect = %v, want http.ErrUseLastResponse", err)
	}
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("Transport is %T, want *http.Transport", c.Transport)
	}
	if tr.Proxy != nil {
		t.Errorf("Transport uses a proxy function")
	}
	if !tr.DisableKeepAlives {
		t.Errorf("keep-alives enabled")
	}
	if got := tr.TLSClientConfig.MinVersion; got != tls.VersionTLS12 {
		t.Errorf("TLS MinVersion = %#x, want TLS 1.2 (STS-37)", got)
	}
}
