package tlsrpt

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mailto(a string) URI { return URI{Scheme: SchemeMailto, Address: a} }
func https(u string) URI  { return URI{Scheme: SchemeHTTPS, URL: u} }

func TestParseRecordSyntax_RPT2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		txt  string
		want []URI // nil: invalid
	}{
		{"v=TLSRPTv1;rua=mailto:r@x.test", []URI{mailto("r@x.test")}},
		{"v=TLSRPTv1; rua=mailto:r@x.test;", []URI{mailto("r@x.test")}},
		{"v=TLSRPTv1 ;\trua=mailto:r@x.test ; ", []URI{mailto("r@x.test")}},
		{"v=tlsrptv1; rua=mailto:r@x.test", nil},
		{"rua=mailto:r@x.test; v=TLSRPTv1", nil},
		{" v=TLSRPTv1; rua=mailto:r@x.test", nil},
		{"v=TLSRPTv1", nil},
		{"v=TLSRPTv1;", nil},
		{"v=TLSRPTv1; rua=mailto:r@x.test ", nil}, // whitespace only next to ";"
		{"v=TLSRPTv1; rua=", nil},
		{"v=TLSRPTv1; rua", nil},
		{"v=TLSRPTv1;; rua=mailto:r@x.test", nil},
		{"v=TLSRPTv1; rua=mailto:r@x.test\n", nil},
	} {
		got, err := ParseRecord(tc.txt)
		if tc.want == nil {
			if !errors.Is(err, ErrRecordInvalid) {
				t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordInvalid", tc.txt, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRecord(%q): %v", tc.txt, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got.RUA); diff != "" {
			t.Errorf("ParseRecord(%q) RUA (-want +got):\n%s", tc.txt, diff)
		}
	}
}

func TestSelectRecord_RPT3(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		txts    []string
		want    []URI
		wantErr error
	}{
		{"spf and tlsrpt", []string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@r.test"}, []URI{mailto("a@r.test")}, nil},
		{"two records", []string{"v=TLSRPTv1; rua=mailto:a@r.test", "v=TLSRPTv1; rua=mailto:b@r.test"}, nil, ErrMultipleRecords},
		{"none", []string{"v=spf1 -all"}, nil, ErrNoRecord},
		{"empty", nil, nil, ErrNoRecord},
		{"no semicolon is no candidate", []string{"v=TLSRPTv1", "v=TLSRPTv1x; rua=mailto:a@r.test"}, nil, ErrNoRecord},
		{"lower case is no candidate", []string{"v=tlsrptv1; rua=mailto:a@r.test", "v=TLSRPTv1; rua=mailto:b@r.test"}, []URI{mailto("b@r.test")}, nil},
		{"one invalid candidate", []string{"v=TLSRPTv1; foo"}, nil, ErrRecordInvalid},
		{"space before semicolon", []string{"v=TLSRPTv1 ; rua=mailto:a@r.test"}, []URI{mailto("a@r.test")}, nil},
	} {
		got, err := SelectRecord(tc.txts)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: SelectRecord = %+v, %v; want %v", tc.name, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: SelectRecord: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got.RUA); diff != "" {
			t.Errorf("%s: RUA (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestParseRecordConcatenated_RPT4 shows that ParseRecord takes the TXT strings joined with nothing added
// (dnsx.Resolver.LookupTXT joins them; tlsreport's tests check that end to end).
func TestParseRecordConcatenated_RPT4(t *testing.T) {
	t.Parallel()
	got, err := ParseRecord("v=TLSRPTv1; rua=mailto:tls" + "rpt@reports.test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]URI{mailto("tlsrpt@reports.test")}, got.RUA); diff != "" {
		t.Errorf("RUA (-want +got):\n%s", diff)
	}
}

func TestParseRecordRUA_RPT5(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		txt     string
		want    []URI // nil: invalid
		ignored []string
	}{
		{"v=TLSRPTv1; rua=mailto:a@r.test, https://r.test/v1/tlsrpt",
			[]URI{mailto("a@r.test"), https("https://r.test/v1/tlsrpt")}, nil},
		{"v=TLSRPTv1; rua=mailto:a@r.test,https://r.test/v1/tlsrpt",
			[]URI{mailto("a@r.test"), https("https://r.test/v1/tlsrpt")}, nil},
		{"v=TLSRPTv1; rua=mailto:a@r.test \t,\t https://r.test/v1/tlsrpt",
			[]URI{mailto("a@r.test"), https("https://r.test/v1/tlsrpt")}, nil},
		{"v=TLSRPTv1; rua=http://r.test/x, mailto:a@r.test", []URI{mailto("a@r.test")}, []string{"http://r.test/x"}},
		{"v=TLSRPTv1; rua=http://r.test/x", nil, nil},
		{"v=TLSRPTv1; rua=ftp://r.test/x, xmpp:a@r.test", nil, nil},
		{"v=TLSRPTv1; rua=mailto:a%2Cb@r.test", []URI{mailto("a,b@r.test")}, nil},
		{"v=TLSRPTv1; rua=mailto:a%21b%3Bc@r.test", []URI{mailto("a!b;c@r.test")}, nil},
		{"v=TLSRPTv1; rua=MAILTO:a@R.Test", []URI{mailto("a@r.test")}, nil},
		{"v=TLSRPTv1; rua=mailto:a@r.test?subject=x", []URI{mailto("a@r.test")}, nil},
		{"v=TLSRPTv1; rua=mailto:a@r.test, mailto:a@r.test", []URI{mailto("a@r.test")}, nil},
		// Header injection through percent-encoding: the address is unusable, so ignored.
		{"v=TLSRPTv1; rua=mailto:a%0D%0ABcc:x@evil.test@r.test", nil, nil},
		{"v=TLSRPTv1; rua=mailto:a@r.test%0D%0A, https://r.test/", []URI{https("https://r.test/")}, []string{"mailto:a@r.test%0D%0A"}},
		{"v=TLSRPTv1; rua=mailto:nodomain", nil, nil},
		{"v=TLSRPTv1; rua=https://", nil, nil},
		{"v=TLSRPTv1; rua=https://user:pw@r.test/", nil, nil},
		{"v=TLSRPTv1; rua=mailto:a@r.test,,https://r.test/", nil, nil},
		{"v=TLSRPTv1; rua=mailto:a@r.test https://r.test/", nil, nil},
	} {
		got, err := ParseRecord(tc.txt)
		if tc.want == nil {
			if !errors.Is(err, ErrRecordInvalid) {
				t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordInvalid", tc.txt, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRecord(%q): %v", tc.txt, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got.RUA); diff != "" {
			t.Errorf("ParseRecord(%q) RUA (-want +got):\n%s", tc.txt, diff)
		}
		if diff := cmp.Diff(tc.ignored, got.Ignored); diff != "" {
			t.Errorf("ParseRecord(%q) Ignored (-want +got):\n%s", tc.txt, diff)
		}
	}
}

func TestParseRecordExtensions_RPT6(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		txt string
		ok  bool
	}{
		{"v=TLSRPTv1; foo=bar; rua=mailto:a@r.test", true},
		{"v=TLSRPTv1; rua=mailto:a@r.test; x-y.z_1=v!al:ue", true},
		{"v=TLSRPTv1; rua=mailto:a@r.test; rua=mailto:b@r.test", true}, // first rua counts
		{"v=TLSRPTv1; foo=; rua=mailto:a@r.test", false},
		{"v=TLSRPTv1; _foo=bar; rua=mailto:a@r.test", false},
		{"v=TLSRPTv1; foo=b a r; rua=mailto:a@r.test", false},
		{"v=TLSRPTv1; foo=a=b; rua=mailto:a@r.test", false},
		{"v=TLSRPTv1; foo=bar", false},
	} {
		got, err := ParseRecord(tc.txt)
		if tc.ok && err != nil {
			t.Errorf("ParseRecord(%q): %v", tc.txt, err)
		}
		if tc.ok && (len(got.RUA) != 1 || got.RUA[0] != mailto("a@r.test")) {
			t.Errorf("ParseRecord(%q).RUA = %+v, want [mailto:a@r.test]", tc.txt, got.RUA)
		}
		if !tc.ok && !errors.Is(err, ErrRecordInvalid) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecordInvalid", tc.txt, got, err)
		}
	}
}

func TestURIString(t *testing.T) {
	t.Parallel()
	if got := mailto("a@r.test").String(); got != "mailto:a@r.test" {
		t.Errorf("String = %q", got)
	}
	if got := https("https://r.test/x").String(); got != "https://r.test/x" {
		t.Errorf("String = %q", got)
	}
}
