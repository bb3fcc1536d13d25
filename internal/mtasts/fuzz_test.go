package mtasts

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
)

// FuzzParseRecord checks that ParseRecord never panics, that what it accepts satisfies the ABNF invariants,
// that SelectRecord agrees with it, and that a record rebuilt from the result parses to the same result.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=STSv1; id=1", "v=STSv1;id=1;", "v=STSv1 ; id=1; ext=foo", "v=STSv1; id=aaa; id=bbb",
		"v=stsv1; id=1", "v=STSv1; id=1; e=é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseRecord(txt)
		if err != nil {
			return
		}
		if rec.Version != Version || !isID(rec.ID) {
			t.Fatalf("ParseRecord(%q) = %+v: bad version or id", txt, rec)
		}
		for _, e := range rec.Extensions {
			if !isExtName(e.Name) || !isRecordExtValue(e.Value) || e.Name == "id" {
				t.Fatalf("ParseRecord(%q): bad extension %+v", txt, e)
			}
		}
		sel, err := SelectRecord([]string{"v=spf1 -all", txt})
		if err != nil {
			t.Fatalf("SelectRecord rejects %q that ParseRecord accepts: %v", txt, err)
		}
		if diff := cmp.Diff(rec, sel); diff != "" {
			t.Fatalf("SelectRecord(%q) differs (-parse +select):\n%s", txt, diff)
		}
		rebuilt := "v=STSv1; id=" + rec.ID
		for _, e := range rec.Extensions {
			rebuilt += "; " + e.Name + "=" + e.Value
		}
		again, err := ParseRecord(rebuilt)
		if err != nil {
			t.Fatalf("rebuilt record %q does not parse: %v", rebuilt, err)
		}
		if diff := cmp.Diff(rec, again); diff != "" {
			t.Fatalf("rebuilt record %q differs (-first +again):\n%s", rebuilt, diff)
		}
	})
}

// FuzzParsePolicy checks that ParsePolicy never panics, that an accepted policy satisfies RFC 8461 Section
// 3.2, and that its Lines parse again to the same policy.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{pENF, strings.ReplaceAll(pENF, "\r\n", "\n"),
		"version: STSv1\nmode: none\nmax_age: 86400", "version: STSv1\nmode: testing\nmx: *.example.net\nmax_age: 99999999\n",
		"version: STSv1\n mode: enforce\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePolicy(body)
		if err != nil {
			if p != nil {
				t.Fatalf("ParsePolicy(%q) returned a policy and %v", body, err)
			}
			return
		}
		switch {
		case p.Version != Version:
			t.Fatalf("ParsePolicy(%q): version %q", body, p.Version)
		case p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone:
			t.Fatalf("ParsePolicy(%q): mode %q", body, p.Mode)
		case p.MaxAge < 0 || p.MaxAge > MaxMaxAge:
			t.Fatalf("ParsePolicy(%q): max_age %v", body, p.MaxAge)
		case p.Mode != ModeNone && len(p.MX) == 0:
			t.Fatalf("ParsePolicy(%q): mode %s without mx", body, p.Mode)
		}
		for _, mx := range p.MX {
			if mx != strings.ToLower(mx) || !isLDHDomain(strings.TrimPrefix(mx, "*.")) {
				t.Fatalf("ParsePolicy(%q): bad mx pattern %q", body, mx)
			}
		}
		again, err := ParsePolicy([]byte(strings.Join(p.Lines, "\r\n")))
		if err != nil {
			t.Fatalf("Lines of %q do not parse again: %v", body, err)
		}
		if diff := cmp.Diff(p, again); diff != "" {
			t.Fatalf("Lines of %q parse differently (-first +again):\n%s", body, diff)
		}
	})
}

// refMatch is a deliberately naive reference for MatchPattern on ASCII names.
func refMatch(pattern, host string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if pattern == "" || host == "" {
		return false
	}
	if strings.HasPrefix(pattern, "*.") {
		first, rest, ok := strings.Cut(host, ".")
		return ok && first != "" && rest == pattern[2:]
	}
	return pattern == host
}

// FuzzMatchPattern checks MatchPattern against refMatch: directly for ASCII hosts, and after A-label
// conversion for the others.
func FuzzMatchPattern(f *testing.F) {
	for _, s := range [][2]string{{"mx1.example.com", "MX1.example.com."}, {"*.example.com", "mail.example.com"},
		{"*.example.com", "a.b.example.com"}, {"*.example.com", "example.com"}, {"xn--bcher-kva.example", "bücher.example"},
		{"example.com", "mail.example.com"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		got := MatchPattern(pattern, host)
		var want bool
		if isASCII(host) {
			want = refMatch(pattern, host)
		} else if d, err := address.ParseDomain(host); err == nil {
			want = refMatch(pattern, d.String())
		}
		if got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, reference says %v", pattern, host, got, want)
		}
		if isASCII(pattern) && MatchPattern(strings.ToUpper(pattern), host) != got {
			t.Fatalf("MatchPattern(%q, %q) depends on the pattern's case", pattern, host)
		}
	})
}
