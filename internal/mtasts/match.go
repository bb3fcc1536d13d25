package mtasts

import (
	"strings"

	"github.com/mxgate/mxgate/internal/address"
)

// MatchPattern reports whether the MX host name matches one policy mx pattern (RFC 8461 Section 4.1).
//
// Both are compared without regard to ASCII case and without one trailing dot. A host written with U-labels
// is converted to A-labels first; a non-ASCII host that is not a valid IDN matches nothing. A pattern "*.d"
// matches a host that is exactly one label followed by ".d". Empty names match nothing.
func MatchPattern(pattern, host string) bool {
	h, ok := normalizeHost(host)
	if !ok {
		return false
	}
	return matchNormalized(normalizePattern(pattern), h)
}

func normalizePattern(p string) string {
	return strings.ToLower(strings.TrimSuffix(p, "."))
}

// normalizeHost returns host in lower-case A-label form without a trailing dot.
func normalizeHost(host string) (string, bool) {
	if isASCII(host) {
		// An ASCII name is already in A-label form; it is not run through IDNA validation, which would
		// refuse real host names such as "r3--sn-x.example.com" (hyphens in positions 3 and 4).
		h := strings.ToLower(strings.TrimSuffix(host, "."))
		return h, h != ""
	}
	// RFC 8461 Section 4.1 (and Section 3.2 on A-labels): a U-label host equals its A-label form.
	d, err := address.ParseDomain(host)
	if err != nil {
		return "", false
	}
	return d.String(), true
}

func matchNormalized(pattern, host string) bool {
	if pattern == "" || host == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		// RFC 8461 Section 4.1: the wildcard matches exactly one left-most label, never zero or several.
		i := strings.IndexByte(host, '.')
		return i > 0 && host[i+1:] == rest
	}
	// RFC 8461 Section 4.1: without a wildcard only the identical name matches.
	return pattern == host
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
