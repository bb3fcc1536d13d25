// Package dane implements DANE for SMTP (RFC 7672) on top of RFC 6698 and RFC 7671: finding the TLSA RRset
// of an MX host (the TLSA base domain, with CNAME expansion as RFC 7672 Section 2.2.2 says) and verifying a
// server's certificate chain against it.
//
// Only the usages RFC 7672 defines for SMTP are usable: DANE-TA(2) and DANE-EE(3). PKIX-TA(0) and PKIX-EE(1)
// are treated as unusable (RFC 7672 Section 3.1.3), as are unknown usages, selectors and matching types and
// records whose data cannot be right (RFC 6698 Section 4.1). DANE-EE ignores names and dates; DANE-TA checks
// the chain and the reference identifiers (RFC 7672 Section 3.2).
//
// It does not validate DNSSEC (the resolver does, see package dnsx), does not decide what a delivery does with
// the result (package tlspolicy does), and does not support a DANE-TA(2) SPKI record whose key is not in the
// server's chain: RFC 7672 Section 3.1.2 requires servers to send the trust anchor certificate.
package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/mxgate/mxgate/internal/dnsx"
)

// Usage, selector and matching type values (RFC 6698 Section 2.1, RFC 7218 mnemonics).
const (
	UsagePKIXTA uint8 = 0
	UsagePKIXEE uint8 = 1
	UsageDANETA uint8 = 2
	UsageDANEEE uint8 = 3

	SelectorCert uint8 = 0
	SelectorSPKI uint8 = 1

	MatchFull   uint8 = 0
	MatchSHA256 uint8 = 1
	MatchSHA512 uint8 = 2
)

// Usable reports whether the client can use record t: RFC 7672 Section 3.1.3 (only DANE-TA and DANE-EE),
// RFC 6698 Section 4.1 (known selector and matching type) and a digest of the right length.
func Usable(t dnsx.TLSA) bool {
	if t.Usage != UsageDANETA && t.Usage != UsageDANEEE {
		return false
	}
	if t.Selector != SelectorCert && t.Selector != SelectorSPKI {
		return false
	}
	switch t.MatchingType {
	case MatchFull:
		return len(t.Data) > 0
	case MatchSHA256:
		return len(t.Data) == sha256.Size
	case MatchSHA512:
		return len(t.Data) == sha512.Size
	}
	return false
}

// String writes t in presentation form, "3 1 1 ABCD...", as TLS reports list TLSA records in policy-string
// (RFC 8460 Section 4.4).
func String(t dnsx.TLSA) string {
	return fmt.Sprintf("%d %d %d %s", t.Usage, t.Selector, t.MatchingType, strings.ToUpper(hex.EncodeToString(t.Data)))
}

// Strings writes every record of rrset with String.
func Strings(rrset []dnsx.TLSA) []string {
	out := make([]string, 0, len(rrset))
	for _, t := range rrset {
		out = append(out, String(t))
	}
	return out
}

// Make returns the TLSA record of the given usage, selector and matching type for cert: for tests, the demo
// and `mxgate dane` to show what a host should publish.
func Make(usage, selector, matchingType uint8, cert *x509.Certificate) dnsx.TLSA {
	return dnsx.TLSA{Usage: usage, Selector: selector, MatchingType: matchingType, Data: digest(selector, matchingType, cert)}
}

// digest is the association data of cert under selector and matching type (RFC 6698 Section 2.1.2, 2.1.3).
func digest(selector, matchingType uint8, cert *x509.Certificate) []byte {
	var data []byte
	switch selector {
	case SelectorCert:
		data = cert.Raw
	case SelectorSPKI:
		data = cert.RawSubjectPublicKeyInfo
	default:
		return nil
	}
	switch matchingType {
	case MatchFull:
		return data
	case MatchSHA256:
		sum := sha256.Sum256(data)
		return sum[:]
	case MatchSHA512:
		sum := sha512.Sum512(data)
		return sum[:]
	}
	return nil
}

// matches reports whether record t is cert's association data.
func matches(t dnsx.TLSA, cert *x509.Certificate) bool {
	d := digest(t.Selector, t.MatchingType, cert)
	return d != nil && len(d) == len(t.Data) && subtle.ConstantTimeCompare(d, t.Data) == 1
}

// Agile keeps the records of rrset a client should match against: usable ones, and among those with the same
// usage and selector only the strongest digest present, plus any Full(0) records (RFC 7671 Section 9, RFC
// 7672 Section 5). A key that matches only a weaker digest is thus not accepted.
func Agile(rrset []dnsx.TLSA) []dnsx.TLSA {
	type key struct{ usage, selector uint8 }
	strongest := map[key]uint8{}
	for _, t := range rrset {
		if !Usable(t) || t.MatchingType == MatchFull {
			continue
		}
		k := key{t.Usage, t.Selector}
		// SHA2-512(2) is preferred over SHA2-256(1): the registry's order is the client's preference here.
		if t.MatchingType > strongest[k] {
			strongest[k] = t.MatchingType
		}
	}
	var out []dnsx.TLSA
	for _, t := range rrset {
		if !Usable(t) {
			continue
		}
		if t.MatchingType == MatchFull || t.MatchingType == strongest[key{t.Usage, t.Selector}] {
			out = append(out, t)
		}
	}
	return out
}
