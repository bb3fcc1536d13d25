package mtasts

import "testing"

// BenchmarkParsePolicy parses a typical enforce policy with three mx patterns (RFC 8461 Section 3.2).
func BenchmarkParsePolicy(b *testing.B) {
	body := []byte("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\n" +
		"mx: *.mail.example.net\r\nmax_age: 604800\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParsePolicy(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatchPattern matches an MX host against an exact and a wildcard pattern (RFC 8461 Section 4.1).
func BenchmarkMatchPattern(b *testing.B) {
	cases := []struct{ name, pattern, host string }{
		{"exact", "mx1.example.com", "MX1.example.com."},
		{"wildcard", "*.mail.example.net", "eu-west.mail.example.net"},
		{"miss", "*.mail.example.net", "a.b.mail.example.net"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MatchPattern(c.pattern, c.host)
			}
		})
	}
}
