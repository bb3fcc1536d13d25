package address

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseHostDomainOrLiteral(t *testing.T) {
	tests := []struct {
		in, want string
		literal  bool
	}{
		{"Example.COM.", "example.com", false},
		{"bücher.example", "xn--bcher-kva.example", false},
		{"[192.0.2.5]", "[192.0.2.5]", true},
		{"[IPv6:2001:DB8::1]", "[IPv6:2001:db8::1]", true},
		{"[2001:db8::1]", "[IPv6:2001:db8::1]", true}, // untagged, as older queue records hold it
	}
	for _, tc := range tests {
		h, err := ParseHost(tc.in)
		if err != nil {
			t.Errorf("ParseHost(%q): %v", tc.in, err)
			continue
		}
		_, isLit := h.Literal()
		_, isDom := h.Domain()
		if h.String() != tc.want || isLit != tc.literal || isDom == tc.literal {
			t.Errorf("ParseHost(%q) = %q (literal %v, domain %v), want %q (literal %v)", tc.in, h, isLit, isDom, tc.want, tc.literal)
		}
		if again, err := ParseHost(h.String()); err != nil || again != h {
			t.Errorf("ParseHost(%q) = %v, %v; want %v", h.String(), again, err, h)
		}
	}
	for _, bad := range []string{"", "[192.0.2.5", "[example.com]", "[fe80::1%eth0]", "a..b"} {
		if _, err := ParseHost(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseHost(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestAddressHost(t *testing.T) {
	for in, want := range map[string]Host{
		"bob@Example.com":        DomainHost(MustParseDomain("example.com")),
		"bob@[192.0.2.5]":        LiteralHost(netip.MustParseAddr("192.0.2.5")),
		"bob@[IPv6:2001:db8::1]": LiteralHost(netip.MustParseAddr("2001:db8::1")),
	} {
		a, err := ParseAddress(in)
		if err != nil {
			t.Fatalf("ParseAddress(%q): %v", in, err)
		}
		if a.Host() != want {
			t.Errorf("ParseAddress(%q).Host() = %v, want %v", in, a.Host(), want)
		}
	}
	if _, err := ParseAddress("bob@[fe80::1%eth0]"); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseAddress with a zoned literal: error = %v, want ErrSyntax", err)
	}
}

func TestParsePathNull(t *testing.T) {
	for _, in := range []string{"", "<>"} {
		p, err := ParsePath(in)
		if err != nil || !p.IsNull() || p != NullPath || p.String() != "" {
			t.Errorf("ParsePath(%q) = %q (null %v), %v; want the null path", in, p, p.IsNull(), err)
		}
		if _, ok := p.Mailbox(); ok {
			t.Errorf("ParsePath(%q).Mailbox() reports a mailbox", in)
		}
	}
	p, err := ParsePath("Bob@Bücher.example")
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := p.Mailbox(); !ok || p.IsNull() || p.String() != "Bob@xn--bcher-kva.example" || PathTo(a) != p {
		t.Errorf("ParsePath = %q (null %v, mailbox %v %v)", p, p.IsNull(), a, ok)
	}
	for _, bad := range []string{"<bob@example.com>", "bob", "@relay:bob@example.com"} {
		if _, err := ParsePath(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParsePath(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
}
