package mtasts

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Mode is a policy mode (RFC 8461 Section 5); the constants are the wire values.
type Mode string

// Policy modes.
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// MaxMaxAge is the largest policy lifetime, 31557600 seconds (about one year, RFC 8461 Section 3.2).
const MaxMaxAge = 31557600 * time.Second

// Policy is a parsed MTA-STS policy body.
type Policy struct {
	Version string // always "STSv1"
	Mode    Mode
	// MX holds the mx patterns in order, lower-case A-labels, each "name" or "*.name".
	MX []string
	// MaxAge is max_age, capped at MaxMaxAge.
	MaxAge     time.Duration
	Extensions []Extension
	// Lines are the policy's lines as fetched, without line terminators (RFC 8460 Section 4.3
	// policy-string).
	Lines []string
}

// ParsePolicy parses a policy body strictly according to the ABNF of RFC 8461 Section 3.2. Every error wraps
// ErrPolicyInvalid.
func ParsePolicy(body []byte) (*Policy, error) {
	fail := func(why string, args ...any) (*Policy, error) {
		return nil, fmt.Errorf("%w: %s", ErrPolicyInvalid, fmt.Sprintf(why, args...))
	}
	if len(body) == 0 {
		return fail("empty policy")
	}
	if !utf8.Valid(body) {
		return fail("policy is not valid UTF-8")
	}
	text := string(body)
	// RFC 8461 Section 3.2: sts-policy-term = LF / CRLF, and the last line's terminator is optional
	// (erratum 6253 only confirms that LF alone is fine).
	text, finalLF := strings.CutSuffix(text, "\n")
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		// A CR belongs to a CRLF terminator only where an LF follows; a lone CR at the very end stays
		// in the value and fails its syntax.
		if i < len(lines)-1 || finalLF {
			lines[i] = strings.TrimSuffix(l, "\r")
		}
	}

	p := &Policy{Lines: lines}
	var haveVersion, haveMode, haveMaxAge bool
	for i, line := range lines {
		n := i + 1
		// Spec: STS-39: an empty line is not in the ABNF; the policy is invalid.
		if line == "" {
			return fail("line %d is empty", n)
		}
		// RFC 8461 Section 3.2: field = name ":" *WSP value *WSP; no whitespace before the name or the
		// colon, which the name syntax check below refuses.
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return fail("line %d has no ':'", n)
		}
		if !isExtName(name) {
			return fail("line %d: invalid field name %q", n, name)
		}
		value = strings.Trim(value, wsp)
		// RFC 8461 Section 3.2: field names and the version and mode values are case-sensitive (%s). A
		// non-repeatable field counts only the first time, but every occurrence must be valid.
		// Spec: STS-44: a syntactically invalid later duplicate makes the policy invalid.
		switch name {
		case "version":
			if value != Version {
				return fail("line %d: version %q is not %s", n, value, Version)
			}
			if !haveVersion {
				p.Version, haveVersion = value, true
			}
		case "mode":
			m := Mode(value)
			switch m {
			case ModeEnforce, ModeTesting, ModeNone:
			default:
				return fail("line %d: invalid mode %q", n, value)
			}
			if !haveMode {
				p.Mode, haveMode = m, true
			}
		case "max_age":
			d, err := parseMaxAge(value)
			if err != nil {
				return fail("line %d: %v", n, err)
			}
			if !haveMaxAge {
				p.MaxAge, haveMaxAge = d, true
			}
		case "mx":
			// RFC 8461 Section 3.2: mx may repeat; each line holds one pattern.
			pat, err := parseMXPattern(value)
			if err != nil {
				return fail("line %d: %v", n, err)
			}
			p.MX = append(p.MX, pat)
		default:
			// RFC 8461 Section 3.2: unknown fields are ignored, but must be syntactically valid.
			if !isPolicyExtValue(value) {
				return fail("line %d: invalid value for field %q", n, name)
			}
			p.Extensions = append(p.Extensions, Extension{Name: name, Value: value})
		}
	}
	// RFC 8461 Section 3.2: version, mode and max_age are REQUIRED.
	switch {
	case !haveVersion:
		return fail("no version field")
	case !haveMode:
		return fail("no mode field")
	case !haveMaxAge:
		return fail("no max_age field")
	}
	// RFC 8461 Section 3.2: "mx" is required unless the mode is "none".
	if p.Mode != ModeNone && len(p.MX) == 0 {
		return fail("mode %s without mx", p.Mode)
	}
	return p, nil
}

// parseMaxAge parses sts-policy-max-age-value = 1*10(DIGIT).
func parseMaxAge(v string) (time.Duration, error) {
	if v == "" || len(v) > 10 {
		return 0, fmt.Errorf("max_age %q is not 1 to 10 digits", v)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("max_age %q is not 1 to 10 digits", v)
		}
	}
	secs, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("max_age %q: %w", v, err)
	}
	// RFC 8461 Section 3.2: max_age is at most 31557600.
	// Spec: erratum 7282 (STS-49): a larger 10-digit value is accepted and capped, never cached longer.
	d := time.Duration(min(secs, uint64(MaxMaxAge/time.Second))) * time.Second
	return d, nil
}

// parseMXPattern checks sts-policy-mx-value = ["*."] Domain, with Domain from RFC 5321 Section 4.1.2, and
// returns it in lower case.
func parseMXPattern(v string) (string, error) {
	d := strings.TrimPrefix(v, "*.")
	// RFC 8461 Section 3.2: IDNs must be written as A-labels, so a non-ASCII character (a U-label) fails the
	// LDH check, as does a trailing dot.
	// Spec: STS-50: "mx1.example.com." is rejected rather than normalised; RFC 5321 Domain has no root dot.
	if !isLDHDomain(d) {
		return "", fmt.Errorf("invalid mx pattern %q", v)
	}
	return strings.ToLower(v), nil
}

// isLDHDomain checks RFC 5321 Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str], plus the
// RFC 1035 length limits (63 per label, 253 in all).
func isLDHDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || !isAlnum(l[0]) || !isAlnum(l[len(l)-1]) {
			return false
		}
		for i := 1; i < len(l)-1; i++ {
			if !isAlnum(l[i]) && l[i] != '-' {
				return false
			}
		}
	}
	return true
}

// isPolicyExtValue checks sts-policy-ext-value = sts-policy-vchar [*(%x20 / sts-policy-vchar)
// sts-policy-vchar], where sts-policy-vchar is VCHAR or a multi-byte UTF-8 character. The caller has trimmed
// surrounding WSP and checked that the body is UTF-8.
func isPolicyExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return false // control characters, including tab inside the value
		}
	}
	return true
}

// Matches reports whether host matches any of the policy's mx patterns (RFC 8461 Section 4.1). It is false
// for a nil policy.
func (p *Policy) Matches(host string) bool {
	if p == nil {
		return false
	}
	h, ok := normalizeHost(host)
	if !ok {
		return false
	}
	for _, pat := range p.MX {
		if matchNormalized(normalizePattern(pat), h) {
			return true
		}
	}
	return false
}
