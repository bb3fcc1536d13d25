package mtasts

import "testing"

func TestMatchPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		pattern, host string
		want          bool
	}{
		{"STS64_exact", "mx1.example.com", "mx1.example.com", true},
		{"STS65_hostCase", "mx1.example.com", "MX1.Example.COM", true},
		{"STS65_patternCase", "MX1.EXAMPLE.com", "mx1.example.com", true},
		{"STS65_wildcardCase", "*.Example.com", "MAIL.example.COM", true},
		{"STS66_hostTrailingDot", "mx1.example.com", "mx1.example.com.", true},
		{"STS66_patternTrailingDot", "mx1.example.com.", "mx1.example.com", true},
		{"STS66_wildcardTrailingDot", "*.example.com", "mail.example.com.", true},
		{"STS66_twoTrailingDots", "mx1.example.com", "mx1.example.com..", false},
		{"STS67_oneLabel", "*.example.com", "mail.example.com", true},
		{"STS67_zeroLabels", "*.example.com", "example.com", false},
		{"STS67_twoLabels", "*.example.com", "foo.bar.example.com", false},
		{"STS67_emptyLabel", "*.example.com", ".example.com", false},
		{"STS67_otherSuffix", "*.example.com", "mail.example.net", false},
		{"STS67_suffixNotLabelAligned", "*.example.com", "mail.myexample.com", false},
		{"STS68_parentDoesNotMatchChild", "example.com", "mail.example.com", false},
		{"STS68_noPrefixMatch", "mail.example.com", "amail.example.com", false},
		{"STS68_noSuffixMatch", "mail.example.com", "mail.example.com.au", false},
		{"STS51_ulabelHost", "xn--bcher-kva.example", "bücher.example", true},
		{"STS51_ulabelHostWildcard", "*.xn--bcher-kva.example", "mx.BÜCHER.example.", true},
		{"STS51_alabelHost", "xn--bcher-kva.example", "xn--bcher-kva.example", true},
		{"STS51_invalidIDNHost", "xn--bcher-kva.example", "bü\u200dcher.example", false},
		{"hyphenPositions34", "r3--sn-abc.example.com", "R3--SN-abc.example.com", true},
		{"emptyHost", "mx1.example.com", "", false},
		{"emptyPattern", "", "mx1.example.com", false},
		{"dotOnly", ".", ".", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := MatchPattern(tt.pattern, tt.host); got != tt.want {
				t.Errorf("MatchPattern(%q, %q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
			}
		})
	}
}
