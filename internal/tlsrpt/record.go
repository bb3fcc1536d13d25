package tlsrpt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
)

// Version is the only protocol version of RFC 8460, as it appears in the TXT record.
const Version = "TLSRPTv1"

// Errors of the _smtp._tls record. Each means: no reports for this Policy Domain (RFC 8460 Section 3).
var (
	// ErrNoRecord: no TXT record begins with "v=TLSRPTv1;".
	ErrNoRecord = errors.New("tlsrpt: no TLSRPT record")
	// ErrMultipleRecords: more than one TXT record begins with "v=TLSRPTv1;".
	ErrMultipleRecords = errors.New("tlsrpt: more than one TLSRPT record")
	// ErrRecordInvalid: the record does not follow the Section 3 grammar, has no rua, or no rua URI we can use.
	ErrRecordInvalid = errors.New("tlsrpt: invalid TLSRPT record")
)

// Scheme is the scheme of a reporting URI. Only the two of RFC 8460 Section 3 are kept.
type Scheme string

const (
	SchemeMailto Scheme = "mailto"
	SchemeHTTPS  Scheme = "https"
)

// URI is one usable rua destination.
type URI struct {
	Scheme Scheme
	// Address is the percent-decoded mail address of a mailto: URI (domain in A-label form).
	Address string
	// URL is an https: URI exactly as published (RFC 8460 Section 5.4: the report is POSTed to it).
	URL string
}

// String returns the destination as a URI again (mailto:addr or the https URL).
func (u URI) String() string {
	if u.Scheme == SchemeMailto {
		return "mailto:" + u.Address
	}
	return u.URL
}

// Record is a parsed _smtp._tls TXT record.
type Record struct {
	// RUA holds the usable destinations, in record order, without duplicates. Never empty for a valid record.
	RUA []URI
	// Ignored holds the rua URIs that were skipped (unsupported scheme or unusable address), for display.
	Ignored []string
}

// maxRecordLen bounds the record we parse: a TXT RRset over 64 KiB does not fit a DNS message anyway.
const maxRecordLen = 64 << 10

// ParseRecord parses one TXT record (its strings already concatenated with nothing added, RFC 8460
// Section 3) according to the ABNF:
//
//	tlsrpt-record  = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//	field-delim    = *WSP ";" *WSP
//	tlsrpt-version = %s"v=TLSRPTv1"
//	tlsrpt-rua     = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//
// Every error wraps ErrRecordInvalid.
func ParseRecord(txt string) (Record, error) {
	fail := func(why string, args ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: %q: %s", ErrRecordInvalid, truncate(txt), fmt.Sprintf(why, args...))
	}
	if len(txt) > maxRecordLen {
		return fail("longer than %d octets", maxRecordLen)
	}
	for i := 0; i < len(txt); i++ {
		if txt[i] >= 0x80 || txt[i] < 0x20 && txt[i] != '\t' || txt[i] == 0x7f {
			return fail("non-printable or non-ASCII byte at offset %d", i)
		}
	}
	parts := strings.Split(txt, ";")
	// RFC 8460 Section 3: tlsrpt-version = %s"v=TLSRPTv1" comes first, case-sensitive, no leading space.
	if strings.TrimRight(parts[0], wsp) != "v="+Version {
		return fail("does not begin with v=%s", Version)
	}
	fields := parts[1:]
	if n := len(fields); n > 0 && strings.Trim(fields[n-1], wsp) == "" {
		// RFC 8460 Section 3: an optional trailing field-delim.
		fields = fields[:n-1]
	}
	if len(fields) == 0 {
		return fail("no fields after the version")
	}
	var (
		rec     Record
		haveRUA bool
	)
	for i, f := range fields {
		// RFC 8460 Section 3: field-delim = *WSP ";" *WSP. Whitespace is allowed only next to ";", so the
		// last field of a record without a trailing ";" may not end in it.
		if i == len(fields)-1 && len(fields) == len(parts)-1 && strings.TrimRight(f, wsp) != f {
			return fail("trailing whitespace without ';'")
		}
		f = strings.Trim(f, wsp)
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return fail("field %q has no '='", f)
		}
		if name == "rua" {
			// Spec: RFC 8460 does not say what a second rua field means; as for MTA-STS ids (STS-10), the
			// first one counts and later ones are ignored.
			if haveRUA {
				continue
			}
			haveRUA = true
			if err := rec.parseRUA(value); err != nil {
				return fail("%v", err)
			}
			continue
		}
		// RFC 8460 Section 3: tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") and
		// tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E). Extensions are checked, then ignored (RPT-6).
		if !isExtName(name) {
			return fail("invalid field name %q", name)
		}
		if !isExtValue(value) {
			return fail("invalid value %q for field %q", value, name)
		}
	}
	// RFC 8460 Section 3: rua is required.
	if !haveRUA {
		return fail("no rua field")
	}
	if len(rec.RUA) == 0 {
		return fail("no usable rua URI (only mailto: and https: are supported)")
	}
	return rec, nil
}

// parseRUA splits the rua value on *WSP "," *WSP and keeps the mailto: and https: URIs.
func (rec *Record) parseRUA(value string) error {
	if value == "" {
		return errors.New("empty rua")
	}
	seen := map[URI]bool{}
	for _, raw := range strings.Split(value, ",") {
		raw = strings.Trim(raw, wsp)
		if raw == "" {
			return fmt.Errorf("empty URI in rua %q", value)
		}
		for i := 0; i < len(raw); i++ {
			if c := raw[i]; c <= ' ' || c == 0x7f {
				return fmt.Errorf("whitespace inside URI %q", raw)
			}
		}
		u, ok := parseURI(raw)
		if !ok {
			// RFC 8460 Section 3: only mailto: and https: are defined; other URIs (and ones we cannot use)
			// are ignored rather than making the whole record invalid.
			rec.Ignored = append(rec.Ignored, raw)
			continue
		}
		if seen[u] {
			continue
		}
		seen[u] = true
		rec.RUA = append(rec.RUA, u)
	}
	return nil
}

func parseURI(raw string) (URI, bool) {
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return URI{}, false
	}
	switch strings.ToLower(scheme) {
	case "mailto":
		// RFC 6068 Section 2: mailto:addr-spec[?hfields]; hfields mean nothing for reports and are dropped.
		// Spec: a mailto URI with several comma-separated addresses is not usable (the comma would have to be
		// percent-encoded inside a TLSRPT rua, and then it is part of the one address).
		to, _, _ := strings.Cut(rest, "?")
		// RFC 8460 Section 3: ",", "!" and ";" in URIs are percent-encoded; decode to get the address.
		dec, err := url.PathUnescape(to)
		if err != nil {
			return URI{}, false
		}
		a, ok := mailtoAddress(dec)
		if !ok {
			return URI{}, false
		}
		return URI{Scheme: SchemeMailto, Address: a}, true
	case "https":
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
			return URI{}, false
		}
		if _, err := address.ParseDomain(u.Hostname()); err != nil {
			return URI{}, false
		}
		return URI{Scheme: SchemeHTTPS, URL: raw}, true
	}
	return URI{}, false
}

// mailtoAddress checks a decoded mailto address: a local part without control characters, quotes or
// backslashes (it may hold characters such as "," that were percent-encoded, RPT-5), and a domain that
// parses. The domain is returned in A-label form.
func mailtoAddress(s string) (string, bool) {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at > 64 {
		return "", false
	}
	local, dom := s[:at], s[at+1:]
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '@' || c == ' ' {
			return "", false
		}
	}
	d, err := address.ParseDomain(dom)
	if err != nil || strings.HasSuffix(dom, ".") {
		return "", false
	}
	return local + "@" + d.String(), true
}

// SelectRecord picks the TLSRPT record from all TXT records at _smtp._tls.<domain> (each already
// concatenated). RFC 8460 Section 3: records that do not begin with "v=TLSRPTv1;" are discarded; if not
// exactly one remains, the domain does not implement TLSRPT (ErrNoRecord or ErrMultipleRecords); the one left
// must parse (ErrRecordInvalid otherwise).
//
// Spec: as for MTA-STS (erratum 6285), whitespace between "v=TLSRPTv1" and ";" is allowed by the ABNF, so
// "v=TLSRPTv1 ;" is a candidate too.
func SelectRecord(txts []string) (Record, error) {
	var cands []string
	for _, t := range txts {
		rest, ok := strings.CutPrefix(t, "v="+Version)
		if ok && strings.HasPrefix(strings.TrimLeft(rest, wsp), ";") {
			cands = append(cands, t)
		}
	}
	switch len(cands) {
	case 0:
		return Record{}, ErrNoRecord
	case 1:
		return ParseRecord(cands[0])
	default:
		return Record{}, fmt.Errorf("%w: %d records begin with v=%s;", ErrMultipleRecords, len(cands), Version)
	}
}

// wsp is the ABNF WSP set: space and horizontal tab.
const wsp = " \t"

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isExtName(s string) bool {
	if s == "" || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
