// Package dnsx is mxgate's DNS resolver, built on miekg/dns: MX, A/AAAA, TXT and TLSA lookups that keep the
// distinctions mail security depends on (NXDOMAIN, NODATA, temporary failure, and the AD bit for DNSSEC).
//
// It does not validate DNSSEC itself: like Postfix and mox it trusts the AD bit from a validating resolver
// that it reaches over a trusted path, and reports it as Result.Secure. RFC 7672 Section 2.1.1 and RFC 6698
// Section 4.1: the AD bit is trusted only from the resolvers the administrator lists as validating (loopback
// ones by default); from any other resolver it is cleared, so its answers are insecure. A SERVFAIL from a
// trusted validating resolver whose cause is DNSSEC (an Extended DNS Error, RFC 8914, of the DNSSEC family,
// or an answer once checking is disabled) is bogus: ErrBogus.
package dnsx

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// Errors returned by lookups. A name with no records of the asked type (NODATA) is not an error: the lookup
// returns no records and a nil error.
var (
	// ErrNotFound: the name does not exist (NXDOMAIN).
	ErrNotFound = errors.New("dnsx: no such domain (NXDOMAIN)")
	// ErrTemporary: SERVFAIL, REFUSED, timeout or a network error. Never to be read as "no records".
	ErrTemporary = errors.New("dnsx: temporary DNS failure")
	// ErrBogus: a validating resolver refused the answer because its DNSSEC validation failed (bogus or
	// indeterminate, RFC 4033 Section 5). It wraps ErrTemporary: like any failure it is never "no records".
	ErrBogus = fmt.Errorf("%w: DNSSEC validation failed (bogus)", ErrTemporary)
	// ErrNotCached: a cache-only lookup (CachedTXTResolver) found no unexpired answer; ask the network.
	ErrNotCached = errors.New("dnsx: no cached answer")
)

// Result describes how an answer was obtained.
type Result struct {
	// Secure is true when a trusted validating resolver set the AD bit (RFC 4035 Section 3.2.3) on every
	// answer used. False means insecure: unsigned, or from a resolver whose AD bit is not trusted.
	Secure bool
	// CNAMEs is the chain of CNAME targets followed to reach the answer, in order, without trailing dots.
	CNAMEs []string
}

// MX is one MX record. Host is lower case without the trailing dot; it is "" for the null MX "." (RFC 7505).
type MX struct {
	Host string
	Pref uint16
}

// TLSA is one TLSA record (RFC 6698 Section 2.1).
type TLSA struct {
	Usage        uint8
	Selector     uint8
	MatchingType uint8
	Data         []byte
}

// Resolver is what the rest of mxgate asks of DNS. Names are absolute, with or without a trailing dot.
// Implementations return errors wrapping ErrNotFound or ErrTemporary so callers can use errors.Is.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]MX, Result, error)
	// LookupTXT returns one string per TXT record, its character-strings concatenated without separators
	// (RFC 7208 Section 3.3, RFC 8461 Section 3.1).
	LookupTXT(ctx context.Context, name string) ([]string, Result, error)
	// LookupIP returns the AAAA and A addresses of host, IPv6 first, each in the order the server returned.
	LookupIP(ctx context.Context, host string) ([]netip.Addr, Result, error)
	LookupTLSA(ctx context.Context, name string) ([]TLSA, Result, error)
}

// CachedTXTResolver is implemented by resolvers with a cache (Client with a Cache): CachedTXT is LookupTXT
// answered from the cache alone, without waiting on the network, so that a caller can take a fast path when
// the answer is at hand. The error wraps ErrNotCached when it is not; otherwise the outcome is the one
// LookupTXT would return now (a cached negative or failed answer included).
type CachedTXTResolver interface {
	CachedTXT(name string) ([]string, Result, error)
}

var _ CachedTXTResolver = (*Client)(nil)
