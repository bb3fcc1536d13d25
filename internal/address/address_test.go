package address

import (
	"errors"
	"testing"
)

func TestParseDomain_STS5(t *testing.T) {
	tests := []struct {
		in, want, unicode string
	}{
		{"Example.COM.", "example.com", "example.com"},
		{"bücher.example", "xn--bcher-kva.example", "bücher.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", "bücher.example"},
		{"r3--sn-abc.example.com", "r3--sn-abc.example.com", "r3--sn-abc.example.com"},
		{"_mta-sts.example.com", "_mta-sts.example.com", "_mta-sts.example.com"},
	}
	for _, tc := range tests {
		d, err := ParseDomain(tc.in)
		if err != nil {
			t.Errorf("ParseDomain(%q): %v", tc.in, err)
			continue
		}
		if d.String() != tc.want || d.Unicode() != tc.unicode {
			t.Errorf("ParseDomain(%q) = %q / %q, want %q / %q", tc.in, d, d.Unicode(), tc.want, tc.unicode)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "-a.example", "a b.example", "exa\nmple.com", "xn--zz-.example"} {
		if _, err := ParseDomain(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseDomain(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestParseAddressRefusesRelayTricks(t *testing.T) {
	good := map[string]string{
		"bob@example.com":          "bob@example.com",
		"Bob.Smith@Bücher.example": "Bob.Smith@xn--bcher-kva.example",
		"bob@[192.0.2.5]":          "bob@[192.0.2.5]",
		`"bob smith"@example.com`:  `"bob smith"@example.com`,
	}
	for in, want := range good {
		a, err := ParseAddress(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAddress(%q) = %q, %v; want %q", in, a, err, want)
		}
	}
	for _, bad := range []string{
		"@relay.test:bob@example.com", // source route
		"bob@example.com@other.test",
		`"bob@other.test"@example.com`,
		"bob@example.com%other.test",
		"bob!other@",
		"bob@exa mple.com",
		"bob\r\nRCPT TO:<x@y>@example.com",
		"bob",
		"@example.com",
	} {
		if _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted, want an error", bad)
		}
	}
}
