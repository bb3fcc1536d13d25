package mtasts

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// pENF is policy P-ENF of the requirements' fixture F0.
const pENF = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmax_age: 604800\r\n"

func ignoreLines() cmp.Option { return cmpopts.IgnoreFields(Policy{}, "Lines") }

func enforcePolicy() *Policy {
	return &Policy{
		Version: "STSv1",
		Mode:    ModeEnforce,
		MX:      []string{"mx1.example.com", "mx2.example.com"},
		MaxAge:  604800 * time.Second,
	}
}

func TestParsePolicyLineEndings_STS38(t *testing.T) {
	t.Parallel()
	lf := strings.ReplaceAll(pENF, "\r\n", "\n")
	tests := []struct{ name, body string }{
		{"crlf", pENF},
		{"lf", lf},
		{"mixed", "version: STSv1\nmode: enforce\r\nmx: mx1.example.com\nmx: mx2.example.com\r\nmax_age: 604800"},
		{"noFinalCRLF", strings.TrimSuffix(pENF, "\r\n")},
		{"noFinalLF", strings.TrimSuffix(lf, "\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePolicy([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParsePolicy(%q) error: %v", tt.body, err)
			}
			if diff := cmp.Diff(enforcePolicy(), got, ignoreLines()); diff != "" {
				t.Errorf("ParsePolicy(%q) mismatch (-want +got):\n%s", tt.body, diff)
			}
			wantLines := []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: mx2.example.com",
				"max_age: 604800"}
			if diff := cmp.Diff(wantLines, got.Lines); diff != "" {
				t.Errorf("Lines mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePolicyValid(t *testing.T) {
	t.Parallel()
	const tail = "\nmx: mx1.example.com\nmax_age: 86400\n"
	tests := []struct {
		name string
		body string
		want Policy
	}{
		{"STS39_noSpace", "version: STSv1\nmode:enforce" + tail, mxPolicy(ModeEnforce, 86400)},
		{"STS39_tabAndSpace", "version: STSv1\nmode:\t enforce" + tail, mxPolicy(ModeEnforce, 86400)},
		{"STS39_trailingSpace", "version: STSv1\nmode: enforce  " + tail, mxPolicy(ModeEnforce, 86400)},
		{"STS39_trailingTab", "version:STSv1\t\nmode: enforce" + tail, mxPolicy(ModeEnforce, 86400)},
		{"STS41_anyOrder", "mx: mx1.example.com\nmax_age: 86400\nmode: enforce\nversion: STSv1\nmx: mx2.example.com",
			Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mx1.example.com", "mx2.example.com"},
				MaxAge: 86400 * time.Second}},
		{"STS40_upperModeIsExtension", "version: STSv1\nmode: testing\nMode: enforce" + tail,
			withExt(mxPolicy(ModeTesting, 86400), Extension{"Mode", "enforce"})},
		{"STS40_upperMXIsExtension", "version: STSv1\nmode: testing\nMX: mx9.example.com" + tail,
			withExt(mxPolicy(ModeTesting, 86400), Extension{"MX", "mx9.example.com"})},
		{"STS43_noneWithoutMX", "version: STSv1\nmode: none\nmax_age: 86400\n",
			Policy{Version: "STSv1", Mode: ModeNone, MaxAge: 86400 * time.Second}},
		{"STS43_noneWithMX", "version: STSv1\nmode: none" + tail, mxPolicy(ModeNone, 86400)},
		{"STS43_testing", "version: STSv1\nmode: testing" + tail, mxPolicy(ModeTesting, 86400)},
		{"STS44_firstModeWins", "version: STSv1\nmode: testing\nmode: enforce" + tail, mxPolicy(ModeTesting, 86400)},
		{"STS44_firstMaxAgeWins", "version: STSv1\nmode: enforce\nmax_age: 60\nmx: mx1.example.com\nmax_age: 604800",
			mxPolicy(ModeEnforce, 60)},
		{"STS44_versionTwice", "version: STSv1\nversion: STSv1\nmode: enforce" + tail, mxPolicy(ModeEnforce, 86400)},
		{"STS46_unknownField", "version: STSv1\nmode: enforce\nfoo_bar.baz-1: some value ü" + tail,
			withExt(mxPolicy(ModeEnforce, 86400), Extension{"foo_bar.baz-1", "some value ü"})},
		{"STS46_name32", "version: STSv1\nmode: enforce\n" + strings.Repeat("n", 32) + ": v" + tail,
			withExt(mxPolicy(ModeEnforce, 86400), Extension{strings.Repeat("n", 32), "v"})},
		{"STS49_zero", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 0", mxPolicy(ModeEnforce, 0)},
		{"STS49_max", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 31557600",
			mxPolicy(ModeEnforce, 31557600)},
		{"STS49_leadingZeros", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 0000086400",
			mxPolicy(ModeEnforce, 86400)},
		{"STS49_capped8Digits", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 99999999",
			mxPolicy(ModeEnforce, 31557600)},
		{"STS49_capped10Digits", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 9999999999",
			mxPolicy(ModeEnforce, 31557600)},
		{"STS50_wildcard", "version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 86400",
			Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"*.example.net"}, MaxAge: 86400 * time.Second}},
		{"STS50_upperCaseLowered", "version: STSv1\nmode: enforce\nmx: MX1.Example.COM\nmax_age: 86400",
			mxPolicy(ModeEnforce, 86400)},
		{"STS51_alabel", "version: STSv1\nmode: enforce\nmx: xn--bcher-kva.example\nmax_age: 86400",
			Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"xn--bcher-kva.example"},
				MaxAge: 86400 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePolicy([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParsePolicy(%q) error: %v", tt.body, err)
			}
			if diff := cmp.Diff(&tt.want, got, ignoreLines()); diff != "" {
				t.Errorf("ParsePolicy(%q) mismatch (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}

func mxPolicy(m Mode, maxAge int) Policy {
	return Policy{Version: "STSv1", Mode: m, MX: []string{"mx1.example.com"}, MaxAge: time.Duration(maxAge) * time.Second}
}

func withExt(p Policy, e ...Extension) Policy {
	p.Extensions = append(p.Extensions, e...)
	return p
}

func TestParsePolicyInvalid(t *testing.T) {
	t.Parallel()
	const (
		head = "version: STSv1\nmode: enforce\n"
		mx   = "mx: mx1.example.com\n"
		age  = "max_age: 86400\n"
	)
	tests := []struct{ name, body string }{
		{"STS39_leadingSpace", "version: STSv1\n mode: enforce\n" + mx + age},
		{"STS39_spaceBeforeColon", "version: STSv1\nmode : enforce\n" + mx + age},
		{"STS39_emptyLine", head + "\n" + mx + age},
		{"STS39_emptyLineAtEnd", head + mx + age + "\n"},
		{"STS39_noColon", head + mx + age + "garbage\n"},
		{"STS38_finalLoneCR", head + mx + "max_age: 86400\r"},
		{"STS39_loneCR", "version: STSv1\rmode: enforce\n" + mx + age},
		{"STS40_upperModeOnly", "version: STSv1\nMode: enforce\n" + mx + age},
		{"STS40_modeValueCase", "version: STSv1\nmode: Enforce\n" + mx + age},
		{"STS40_versionValueCase", "version: stsv1\nmode: enforce\n" + mx + age},
		{"STS40_upperMXOnly", head + "MX: mx1.example.com\n" + age},
		{"STS42_noVersion", "mode: enforce\n" + mx + age},
		{"STS42_noMode", "version: STSv1\n" + mx + age},
		{"STS42_noMaxAge", head + mx},
		{"STS43_enforceWithoutMX", head + age},
		{"STS43_testingWithoutMX", "version: STSv1\nmode: testing\n" + age},
		{"STS44_invalidLaterMode", head + "mode: bogus\n" + mx + age},
		{"STS44_invalidLaterMaxAge", head + mx + age + "max_age: soon\n"},
		{"STS44_invalidLaterVersion", head + mx + age + "version: STSv2\n"},
		{"STS45_commaList", head + "mx: mx1.example.com, mx2.example.com\n" + age},
		{"STS45_invalidLaterMX", head + mx + "mx: bad..example.com\n" + age},
		{"STS46_underscoreName", head + mx + age + "_foo: x\n"},
		{"STS46_emptyValue", head + mx + age + "foo:\n"},
		{"STS46_emptyValueSpaces", head + mx + age + "foo:   \n"},
		{"STS46_name33", head + mx + age + strings.Repeat("n", 33) + ": x\n"},
		{"STS46_controlInValue", head + mx + age + "foo: a\x01b\n"},
		{"STS46_tabInValue", head + mx + age + "foo: a\tb\n"},
		{"STS46_delInValue", head + mx + age + "foo: a\x7fb\n"},
		{"STS47_version2", "version: STSv2\nmode: enforce\n" + mx + age},
		{"STS48_report", "version: STSv1\nmode: report\n" + mx + age},
		{"STS48_enforced", "version: STSv1\nmode: enforced\n" + mx + age},
		{"STS48_empty", "version: STSv1\nmode:\n" + mx + age},
		{"STS49_negative", head + mx + "max_age: -1\n"},
		{"STS49_plus", head + mx + "max_age: +5\n"},
		{"STS49_fraction", head + mx + "max_age: 1.5\n"},
		{"STS49_exponent", head + mx + "max_age: 1e6\n"},
		{"STS49_empty", head + mx + "max_age:\n"},
		{"STS49_11digits", head + mx + "max_age: 10000000000\n"},
		{"STS49_unit", head + mx + "max_age: 86400s\n"},
		{"STS50_noDot", head + "mx: *example.net\n" + age},
		{"STS50_innerWildcard", head + "mx: mail.*.example.net\n" + age},
		{"STS50_doubleWildcard", head + "mx: *.*.example.net\n" + age},
		{"STS50_starOnly", head + "mx: *\n" + age},
		{"STS50_leadingDot", head + "mx: .example.com\n" + age},
		{"STS50_emptyLabel", head + "mx: mail..example.com\n" + age},
		{"STS50_leadingHyphen", head + "mx: -mx.example.com\n" + age},
		{"STS50_trailingHyphen", head + "mx: mx-.example.com\n" + age},
		{"STS50_underscore", head + "mx: m_x.example.com\n" + age},
		{"STS50_trailingDot", head + "mx: mx1.example.com.\n" + age},
		{"STS50_empty", head + "mx:\n" + age},
		{"STS50_label64", head + "mx: " + strings.Repeat("a", 64) + ".example.com\n" + age},
		{"STS51_ulabel", head + "mx: bücher.example\n" + age},
		{"STS52_empty", ""},
		{"STS52_newlineOnly", "\n"},
		{"STS52_notUTF8", head + mx + age + "foo: \xff\xfe\n"},
		{"STS52_binary", "\x00\x01\x02\x03"},
		{"STS52_html", "<html><body>hello</body></html>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePolicy([]byte(tt.body))
			if !errors.Is(err, ErrPolicyInvalid) {
				t.Fatalf("ParsePolicy(%q) = %+v, %v; want error wrapping ErrPolicyInvalid", tt.body, got, err)
			}
			if got != nil {
				t.Errorf("ParsePolicy(%q) returned a policy with an error", tt.body)
			}
		})
	}
}

func TestPolicyMatches_STS64(t *testing.T) {
	t.Parallel()
	p := &Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mx1.example.com", "*.example.net"}}
	tests := []struct {
		host string
		want bool
	}{
		{"mx1.example.com", true},
		{"MX1.Example.COM.", true},
		{"a.example.net", true},
		{"host.hosting.test", false}, // STS-64: a CNAME target is not the MX name
		{"mx2.example.com", false},
		{"example.net", false},
		{"a.b.example.net", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := p.Matches(tt.host); got != tt.want {
			t.Errorf("Matches(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	var nilPolicy *Policy
	if nilPolicy.Matches("mx1.example.com") {
		t.Errorf("nil policy matched")
	}
}
