package address

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseDomain: ParseDomain never panics; what it accepts is lower-case ASCII LDH (plus '_') labels
// within DNS limits, without a trailing dot, free of relay characters, and parses again to itself (from
// the A-label form, from its FQDN and from its U-label form).
func FuzzParseDomain(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzParseDomain, plus these.
	for _, s := range []string{"example.com", "Example.COM.", "bücher.example", "xn--bcher-kva.example",
		"_mta-sts.example.com", "r3--sn-abc.example.com", "a..b", "exa\nmple.com", "xn--zz-.example", "ß.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDomain(s)
		if err != nil {
			return
		}
		a := d.String()
		if a == "" || len(a) > 253 || strings.HasSuffix(a, ".") || a != strings.ToLower(a) {
			t.Fatalf("ParseDomain(%q) = %q: empty, too long, trailing dot or upper case", s, a)
		}
		for i := 0; i < len(a); i++ {
			c := a[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				t.Fatalf("ParseDomain(%q) = %q holds %q", s, a, c)
			}
		}
		for _, l := range strings.Split(a, ".") {
			if l == "" || len(l) > 63 {
				t.Fatalf("ParseDomain(%q) = %q has label %q", s, a, l)
			}
		}
		for _, again := range []string{a, d.FQDN(), strings.ToUpper(a)} {
			d2, err := ParseDomain(again)
			if err != nil || d2 != d {
				t.Fatalf("ParseDomain(%q) = %q, %v; want %q (from %q)", again, d2, err, a, s)
			}
		}
		if u := d.Unicode(); !utf8.ValidString(u) {
			t.Fatalf("Unicode() of %q is not UTF-8: %q", a, u)
		} else if d3, err := ParseDomain(u); err != nil || d3 != d {
			t.Fatalf("U-label form %q of %q parses to %q, %v", u, a, d3, err)
		}
	})
}

// FuzzParseAddress: ParseAddress never panics; what it accepts has no control characters, CR or LF, no
// source route and no relay hack in the domain, and its String() parses again to the same address.
func FuzzParseAddress(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzParseAddress, plus these.
	for _, s := range []string{"bob@example.com", "Bob.Smith@Bücher.example", "bob@[192.0.2.5]", "bob@[IPv6:2001:db8::1]",
		`"bob smith"@example.com`, `"a@b"@example.com`, "user%other@example.com", "@relay:bob@example.com",
		"bob@example.com@evil", "a\r\nRCPT TO:<x>@example.com", "jörg@exämple.de", "bob@example.com."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		str := a.String()
		if strings.ContainsAny(str, "\r\n\x00") || strings.HasPrefix(str, "@") {
			t.Fatalf("ParseAddress(%q) = %q: control character or source route", s, str)
		}
		if a.Local == "" || len(a.Local) > 64 {
			t.Fatalf("ParseAddress(%q): local part %q", s, a.Local)
		}
		if a.Literal.IsValid() == !a.Domain.IsZero() {
			t.Fatalf("ParseAddress(%q): exactly one of domain %q and literal %v must be set", s, a.Domain, a.Literal)
		}
		if dom := str[strings.LastIndexByte(str, '@')+1:]; strings.ContainsAny(dom, "%!@") {
			t.Fatalf("ParseAddress(%q) = %q: relay character in the domain", s, str)
		}
		if strings.HasPrefix(a.Local, `"`) && strings.ContainsAny(a.Local[1:len(a.Local)-1], "@%!") {
			t.Fatalf("ParseAddress(%q): quoted local part with a relay character: %q", s, a.Local)
		}
		b, err := ParseAddress(str)
		if err != nil {
			t.Fatalf("String() %q of ParseAddress(%q) does not parse: %v", str, s, err)
		}
		if b != a || b.String() != str {
			t.Fatalf("round trip of %q: %+v (%q), want %+v (%q)", s, b, b.String(), a, str)
		}
	})
}

// FuzzParseHost: ParseHost never panics, and what it accepts formats to a form that parses back to the same
// Host, which is a domain or a literal, never both.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"example.com", "[192.0.2.5]", "[IPv6:2001:db8::1]", "[2001:db8::1]", "[::ffff:192.0.2.5]",
		"[fe80::1%eth0]", "[IPv6:192.0.2.5]", "[", "[]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHost(s)
		if err != nil {
			return
		}
		_, isDom := h.Domain()
		_, isLit := h.Literal()
		if isDom == isLit {
			t.Fatalf("ParseHost(%q) = %v: domain %v, literal %v", s, h, isDom, isLit)
		}
		again, err := ParseHost(h.String())
		if err != nil || again != h {
			t.Fatalf("ParseHost(%q) = %q, which parses to %v, %v", s, h, again, err)
		}
	})
}
