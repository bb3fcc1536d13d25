// Package address implements typed mail domains and addresses: RFC 5321 syntax, IDNA (RFC 5891) A-label
// normalisation and trailing-dot handling, so that the rest of mxgate compares names in one canonical form.
//
// It deliberately does not resolve anything, and it does not accept source routes or percent-hack relaying
// syntax: those are refused at the edge by the SMTP server.
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrSyntax is wrapped by every parse error of this package.
var ErrSyntax = errors.New("address: invalid syntax")

// Domain is a DNS domain name in canonical form: lower-case A-labels, no trailing dot. The zero Domain is
// "no domain" (for example the null reverse path).
type Domain struct {
	ascii string
}

var lookupProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(false), // underscore labels such as _mta-sts are valid DNS names
	idna.Transitional(false),
)

// ParseDomain parses a domain written with A-labels or U-labels, with or without one trailing dot.
func ParseDomain(s string) (Domain, error) {
	orig := s
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return Domain{}, fmt.Errorf("%w: empty domain", ErrSyntax)
	}
	if len(s) > 253 {
		return Domain{}, fmt.Errorf("%w: domain %q longer than 253 octets", ErrSyntax, orig)
	}
	if !utf8.ValidString(s) {
		return Domain{}, fmt.Errorf("%w: domain is not valid UTF-8", ErrSyntax)
	}
	a := strings.ToLower(s)
	if !isASCII(s) || strings.Contains(a, "xn--") {
		// Only names with U-labels or A-labels go through IDNA: plain LDH names such as r3--sn-abc.example.com
		// (hyphens in positions 3 and 4, common in real MX names) are valid DNS names but not valid IDNA.
		var err error
		a, err = lookupProfile.ToASCII(s)
		if err != nil {
			return Domain{}, fmt.Errorf("%w: domain %q: %v", ErrSyntax, orig, err)
		}
		a = strings.ToLower(a)
	}
	for _, label := range strings.Split(a, ".") {
		if err := checkLabel(label); err != nil {
			return Domain{}, fmt.Errorf("%w: domain %q: %v", ErrSyntax, orig, err)
		}
	}
	return Domain{ascii: a}, nil
}

// MustParseDomain is ParseDomain for constants in tests and tables; it panics on bad input.
func MustParseDomain(s string) Domain {
	d, err := ParseDomain(s)
	if err != nil {
		panic(err)
	}
	return d
}

func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q longer than 63 octets", l)
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("label %q has character %q", l, c)
		}
	}
	return nil
}

// String returns the A-label form without a trailing dot.
func (d Domain) String() string { return d.ascii }

// Unicode returns the U-label form for display; it falls back to the A-label form.
func (d Domain) Unicode() string {
	u, err := idna.ToUnicode(d.ascii)
	if err != nil {
		return d.ascii
	}
	return u
}

// FQDN returns the name with a trailing dot, as DNS queries want it.
func (d Domain) FQDN() string { return d.ascii + "." }

// Equal reports whether d and e are the same domain (go-cmp uses it).
func (d Domain) Equal(e Domain) bool { return d == e }

// IsZero reports whether d is the empty domain.
func (d Domain) IsZero() bool { return d.ascii == "" }

// Parent returns the domain with its left-most label removed, and false for a single-label domain.
func (d Domain) Parent() (Domain, bool) {
	i := strings.IndexByte(d.ascii, '.')
	if i < 0 {
		return Domain{}, false
	}
	return Domain{ascii: d.ascii[i+1:]}, true
}

// Address is a mail address: a local part and either a domain or an address literal.
type Address struct {
	Local   string
	Domain  Domain
	Literal netip.Addr // set for user@[192.0.2.5]; Domain is then zero
}

// ParseAddress parses local@domain or local@[ip]. The local part may be a quoted string. Source routes,
// '%' and '!' relay hacks in the domain, control characters, CR and LF are refused.
func ParseAddress(s string) (Address, error) {
	if len(s) > 320 {
		return Address{}, fmt.Errorf("%w: address longer than 320 octets", ErrSyntax)
	}
	if strings.HasPrefix(s, "@") {
		return Address{}, fmt.Errorf("%w: source routes are not accepted: %q", ErrSyntax, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return Address{}, fmt.Errorf("%w: control character in address %q", ErrSyntax, s)
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Address{}, fmt.Errorf("%w: %q is not local@domain", ErrSyntax, s)
	}
	local, dom := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return Address{}, fmt.Errorf("%w: %q: %v", ErrSyntax, s, err)
	}
	if strings.HasPrefix(dom, "[") && strings.HasSuffix(dom, "]") {
		ip, err := parseLiteral(dom[1 : len(dom)-1])
		if err != nil {
			return Address{}, fmt.Errorf("%w: address literal %q: %v", ErrSyntax, dom, err)
		}
		return Address{Local: local, Literal: ip}, nil
	}
	d, err := ParseDomain(dom)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// MustParseAddress is ParseAddress for constants in tests and tables; it panics on bad input.
func MustParseAddress(s string) Address {
	a, err := ParseAddress(s)
	if err != nil {
		panic(err)
	}
	return a
}

// Check reports an error unless a is what ParseAddress gives for a.String(). An Address built from its
// fields rather than parsed may hold what no parse accepts (CR or LF, a bad local part, a zoned literal),
// and whoever stores one as text relies on reading it back.
func (a Address) Check() error {
	b, err := ParseAddress(a.String())
	if err != nil {
		return err
	}
	if b != a {
		return fmt.Errorf("%w: %q does not read back as itself", ErrSyntax, a)
	}
	return nil
}

func checkLocal(l string) error {
	if len(l) > 64 {
		return errors.New("local part longer than 64 octets")
	}
	// RFC 6531 Section 3.3: a non-ASCII local part is UTF-8; other octets are no address at all, and no
	// bounce could be addressed to them.
	if !utf8.ValidString(l) {
		return errors.New("local part is not valid UTF-8")
	}
	if strings.HasPrefix(l, `"`) {
		if len(l) < 2 || !strings.HasSuffix(l, `"`) {
			return errors.New("unterminated quoted local part")
		}
		// RFC 5321 Section 4.1.2 quoted-string. A quoted '@' or '%' is legal syntax but is only ever used for
		// relay tricks; an outbound gateway has no reason to carry it, so it is refused.
		inner := l[1 : len(l)-1]
		if strings.ContainsAny(inner, "@%!") {
			return errors.New("quoted local part contains '@', '%' or '!'")
		}
		return nil
	}
	if strings.HasPrefix(l, ".") || strings.HasSuffix(l, ".") || strings.Contains(l, "..") {
		return errors.New("misplaced dot in local part")
	}
	for _, r := range l {
		switch {
		case r >= 0x80: // SMTPUTF8 local parts
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$&'*+-/=?^_`{|}~.", r):
		default:
			return fmt.Errorf("character %q not allowed in local part", r)
		}
	}
	return nil
}

// String returns local@domain with the domain in A-label form.
func (a Address) String() string {
	if a.Literal.IsValid() {
		if a.Literal.Is6() {
			return a.Local + "@[IPv6:" + a.Literal.String() + "]"
		}
		return a.Local + "@[" + a.Literal.String() + "]"
	}
	return a.Local + "@" + a.Domain.String()
}

// Equal reports whether a and b are the same address (go-cmp uses it).
func (a Address) Equal(b Address) bool { return a == b }

// IsZero reports whether a is the null address (the <> reverse path).
func (a Address) IsZero() bool { return a.Local == "" && a.Domain.IsZero() && !a.Literal.IsValid() }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
