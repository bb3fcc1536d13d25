package address

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
)

// Host is what follows the '@' of an address: a domain, or an address literal (RFC 5321 Section 4.1.3).
// It is where a recipient's mail goes, so the queue batches and delivers by Host. The zero Host is no host.
type Host struct {
	domain  Domain
	literal netip.Addr
}

// DomainHost returns d as a Host.
func DomainHost(d Domain) Host { return Host{domain: d} }

// LiteralHost returns the address literal ip as a Host.
func LiteralHost(ip netip.Addr) Host { return Host{literal: ip} }

// ParseHost parses a domain (as ParseDomain) or an address literal in brackets: "[192.0.2.5]",
// "[IPv6:2001:db8::1]"; the "IPv6:" tag is also accepted missing, as in older queue records.
func ParseHost(s string) (Host, error) {
	if !strings.HasPrefix(s, "[") {
		d, err := ParseDomain(s)
		if err != nil {
			return Host{}, err
		}
		return Host{domain: d}, nil
	}
	if !strings.HasSuffix(s, "]") {
		return Host{}, fmt.Errorf("%w: address literal %q has no closing bracket", ErrSyntax, s)
	}
	ip, err := parseLiteral(s[1 : len(s)-1])
	if err != nil {
		return Host{}, fmt.Errorf("%w: address literal %q: %v", ErrSyntax, s, err)
	}
	return Host{literal: ip}, nil
}

// MustParseHost is ParseHost for constants in tests and tables; it panics on bad input.
func MustParseHost(s string) Host {
	h, err := ParseHost(s)
	if err != nil {
		panic(err)
	}
	return h
}

// parseLiteral parses the inside of an address literal's brackets. RFC 5321 Section 4.1.3 tags an IPv6
// literal "IPv6:" and leaves IPv4 untagged; a tagged IPv4 address or an untagged IPv6 address is accepted
// (the meaning is not in doubt), a zone is not (it names an interface of the sender, not a destination).
func parseLiteral(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(strings.TrimPrefix(s, "IPv6:"))
	if err != nil {
		return netip.Addr{}, err
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("zone %q in address literal", ip.Zone())
	}
	return ip, nil
}

// Domain returns the host's domain, and false for an address literal or the zero Host.
func (h Host) Domain() (Domain, bool) { return h.domain, !h.domain.IsZero() }

// Literal returns the host's address literal, and false for a domain or the zero Host.
func (h Host) Literal() (netip.Addr, bool) { return h.literal, h.literal.IsValid() }

// IsZero reports whether h is no host.
func (h Host) IsZero() bool { return h.domain.IsZero() && !h.literal.IsValid() }

// String returns the domain in A-label form, or the literal in brackets ("[192.0.2.5]",
// "[IPv6:2001:db8::1]"), as it is written after the '@' of an address.
func (h Host) String() string {
	switch {
	case h.literal.Is4():
		return "[" + h.literal.String() + "]"
	case h.literal.IsValid():
		return "[IPv6:" + h.literal.String() + "]"
	}
	return h.domain.String()
}

// Host returns the part of a after the '@'.
func (a Address) Host() Host { return Host{domain: a.Domain, literal: a.Literal} }

// Path is an SMTP reverse path (RFC 5321 Section 4.1.2): a mailbox, or the null path "<>" that delivery
// status notifications and TLS reports are sent from (RFC 5321 Section 4.5.5), so that nothing bounces
// back to them. The zero Path is the null path.
type Path struct {
	mailbox Address
}

// NullPath is the null reverse path <>.
var NullPath = Path{}

// PathTo returns the reverse path of the mailbox a; the zero Address gives the null path.
func PathTo(a Address) Path { return Path{mailbox: a} }

// ParsePath parses a reverse path as the queue stores it: "" or "<>" is the null path, anything else a
// mailbox (ParseAddress).
func ParsePath(s string) (Path, error) {
	if s == "" || s == "<>" {
		return Path{}, nil
	}
	a, err := ParseAddress(s)
	if err != nil {
		return Path{}, err
	}
	return Path{mailbox: a}, nil
}

// MustParsePath is ParsePath for constants in tests and tables; it panics on bad input.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// IsNull reports whether p is the null reverse path.
func (p Path) IsNull() bool { return p.mailbox.IsZero() }

// Mailbox returns the path's mailbox, and false for the null path.
func (p Path) Mailbox() (Address, bool) { return p.mailbox, !p.IsNull() }

// String returns the mailbox as Address.String does, and "" for the null path (the stored form, and what
// MAIL FROM:<> carries between its brackets).
func (p Path) String() string {
	if p.IsNull() {
		return ""
	}
	return p.mailbox.String()
}

// Equal reports whether p and q are the same path (go-cmp uses it).
func (p Path) Equal(q Path) bool { return p == q }

// Equal reports whether h and g are the same host (go-cmp uses it).
func (h Host) Equal(g Host) bool { return h == g }

// LogValue makes a Host log as its text (example.com, [192.0.2.1]) rather than as an empty structure.
func (h Host) LogValue() slog.Value { return slog.StringValue(h.String()) }

// LogValue makes a Path log as its text (a mailbox, or empty for the null path).
func (p Path) LogValue() slog.Value { return slog.StringValue(p.String()) }

// LogValue makes a Domain log as its text.
func (d Domain) LogValue() slog.Value { return slog.StringValue(d.String()) }

// LogValue makes an Address log as its text.
func (a Address) LogValue() slog.Value { return slog.StringValue(a.String()) }
