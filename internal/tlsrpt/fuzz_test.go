package tlsrpt

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseRecord checks that ParseRecord never panics, that every error wraps ErrRecordInvalid, and that
// a valid record yields only usable, CR/LF-free mailto: and https: destinations.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:a@r.test")
	f.Add("v=TLSRPTv1;rua=mailto:a@r.test,https://r.test/x;")
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseRecord(txt)
		if err != nil {
			if !errors.Is(err, ErrRecordInvalid) {
				t.Fatalf("ParseRecord(%q): error %v does not wrap ErrRecordInvalid", txt, err)
			}
			return
		}
		if len(rec.RUA) == 0 {
			t.Fatalf("ParseRecord(%q): valid record without destinations", txt)
		}
		for _, u := range rec.RUA {
			s := u.String()
			if strings.ContainsAny(s, "\r\n") {
				t.Fatalf("ParseRecord(%q): destination %q has CR or LF", txt, s)
			}
			switch u.Scheme {
			case SchemeMailto:
				if !strings.Contains(u.Address, "@") || u.URL != "" {
					t.Fatalf("ParseRecord(%q): bad mailto %+v", txt, u)
				}
			case SchemeHTTPS:
				if !strings.HasPrefix(strings.ToLower(u.URL), "https:") || u.Address != "" {
					t.Fatalf("ParseRecord(%q): bad https %+v", txt, u)
				}
			default:
				t.Fatalf("ParseRecord(%q): scheme %q", txt, u.Scheme)
			}
		}
		if _, err := SelectRecord([]string{"v=spf1 -all", txt}); err != nil && strings.HasPrefix(txt, "v=TLSRPTv1;") {
			t.Fatalf("SelectRecord with the valid record %q: %v", txt, err)
		}
	})
}
