package mtasts

import (
	"fmt"
	"strings"
)

// Version is the only protocol version of RFC 8461, used in both the TXT record and the policy.
const Version = "STSv1"

// Extension is a name/value field of a TXT record or policy that RFC 8461 does not define. Such fields are
// syntax-checked and then ignored (RFC 8461 Sections 3.1 and 3.2); they are kept for display.
type Extension struct {
	Name  string
	Value string
}

// Record is a parsed _mta-sts TXT record.
type Record struct {
	Version    string // always "STSv1"
	ID         string // 1-32 ALPHA/DIGIT; the first id= field when there are several
	Extensions []Extension
}

// ParseRecord parses one TXT record (its strings already concatenated without separators, RFC 8461
// Section 3.1) strictly according to the ABNF:
//
//	sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//	sts-field-delim = *WSP ";" *WSP
//
// Every error wraps ErrRecordInvalid.
func ParseRecord(txt string) (Record, error) {
	fail := func(why string, args ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: %q: %s", ErrRecordInvalid, txt, fmt.Sprintf(why, args...))
	}
	// RFC 8461 Section 3.1: the record is US-ASCII; any other byte makes it invalid.
	for i := 0; i < len(txt); i++ {
		if txt[i] >= 0x80 {
			return fail("non-ASCII byte at offset %d", i)
		}
	}
	parts := strings.Split(txt, ";")
	// RFC 8461 Section 3.1: sts-version = %s"v=STSv1" comes first, case-sensitive, with no leading space.
	// Whitespace between it and the first ";" is part of sts-field-delim.
	if strings.TrimRight(parts[0], wsp) != "v="+Version {
		return fail("does not begin with v=%s", Version)
	}
	fields := parts[1:]
	if n := len(fields); n > 0 {
		last := fields[n-1]
		switch {
		case strings.Trim(last, wsp) == "":
			// RFC 8461 Section 3.1: an optional trailing sts-field-delim.
			fields = fields[:n-1]
		case strings.TrimRight(last, wsp) != last:
			// Whitespace is only allowed around ";", so a last field may not end in it.
			return fail("trailing whitespace without ';'")
		}
	}
	if len(fields) == 0 {
		return fail("no fields after the version")
	}
	rec := Record{Version: Version}
	haveID := false
	for _, f := range fields {
		f = strings.Trim(f, wsp)
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return fail("field %q has no '='", f)
		}
		if !isExtName(name) {
			return fail("invalid field name %q", name)
		}
		if name == "id" {
			// RFC 8461 Section 3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT). A field named "id" is never an
			// extension, so an id with other characters or over 32 long makes the record invalid.
			if !isID(value) {
				return fail("invalid id %q", value)
			}
			// RFC 8461 Section 3.2 (duplicate rule), applied to the record as STS-10 reads it: the first
			// id counts.
			if !haveID {
				rec.ID, haveID = value, true
			}
			continue
		}
		// RFC 8461 Section 3.1: sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E).
		if !isRecordExtValue(value) {
			return fail("invalid value %q for field %q", value, name)
		}
		rec.Extensions = append(rec.Extensions, Extension{Name: name, Value: value})
	}
	// RFC 8461 Section 3.1: id is REQUIRED.
	if !haveID {
		return fail("no id field")
	}
	return rec, nil
}

// SelectRecord picks the MTA-STS record from all TXT records at _mta-sts.<domain> (each already
// concatenated). RFC 8461 Section 3.1: records that do not begin with "v=STSv1;" are discarded; if not
// exactly one remains, the domain has no usable record (ErrNoRecord or ErrMultipleRecords); the remaining one
// must parse (ErrRecordInvalid otherwise).
//
// Spec: erratum 6285 (STS-8): the ABNF allows whitespace before the ";", so "v=STSv1 ;" is kept as a
// candidate too. Anything else after "v=STSv1" (no ";", another character) is not an MTA-STS record.
func SelectRecord(txts []string) (Record, error) {
	var sts []string
	for _, t := range txts {
		if isSTSCandidate(t) {
			sts = append(sts, t)
		}
	}
	switch len(sts) {
	case 0:
		return Record{}, ErrNoRecord
	case 1:
		return ParseRecord(sts[0])
	default:
		return Record{}, fmt.Errorf("%w: %d records begin with v=%s", ErrMultipleRecords, len(sts), Version)
	}
}

func isSTSCandidate(t string) bool {
	rest, ok := strings.CutPrefix(t, "v="+Version)
	return ok && strings.HasPrefix(strings.TrimLeft(rest, wsp), ";")
}

// wsp is the ABNF WSP set: space and horizontal tab.
const wsp = " \t"

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isExtName checks sts-ext-name (Section 3.1) and sts-policy-ext-name (Section 3.2), which are the same:
// (ALPHA / DIGIT) 0*31(ALPHA / DIGIT / "_" / "-" / ".").
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

func isID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

func isRecordExtValue(s string) bool {
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
