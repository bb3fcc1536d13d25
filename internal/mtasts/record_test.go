package mtasts

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRecordValid(t *testing.T) {
	t.Parallel()
	id32 := strings.Repeat("aZ09", 8)
	tests := []struct {
		name string
		txt  string
		want Record
	}{
		{"STS6_minimal", "v=STSv1; id=1", Record{Version: "STSv1", ID: "1"}},
		{"STS7_timestamp", "v=STSv1; id=20160831085700Z", Record{Version: "STSv1", ID: "20160831085700Z"}},
		{"STS7_32chars", "v=STSv1; id=" + id32, Record{Version: "STSv1", ID: id32}},
		{"STS8_noSpace", "v=STSv1;id=1", Record{Version: "STSv1", ID: "1"}},
		{"STS8_trailingSemicolon", "v=STSv1; id=1;", Record{Version: "STSv1", ID: "1"}},
		{"STS8_tabsAndTrailing", "v=STSv1;\tid=1 ; ", Record{Version: "STSv1", ID: "1"}},
		{"STS8_spaceBeforeSemicolon", "v=STSv1 ; id=1", Record{Version: "STSv1", ID: "1"}},
		{"STS9_extensionBeforeID", "v=STSv1; ext=foo; id=1", Record{Version: "STSv1", ID: "1",
			Extensions: []Extension{{Name: "ext", Value: "foo"}}}},
		{"STS9_extensionNameSyntax", "v=STSv1; id=1; a_b.c-d=!\"#:<>~", Record{Version: "STSv1", ID: "1",
			Extensions: []Extension{{Name: "a_b.c-d", Value: "!\"#:<>~"}}}},
		{"STS9_extensionName32", "v=STSv1; id=1; " + strings.Repeat("x", 32) + "=1", Record{Version: "STSv1",
			ID: "1", Extensions: []Extension{{Name: strings.Repeat("x", 32), Value: "1"}}}},
		{"STS9_upperCaseIDIsExtension", "v=STSv1; id=1; ID=2", Record{Version: "STSv1", ID: "1",
			Extensions: []Extension{{Name: "ID", Value: "2"}}}},
		{"STS10_firstIDWins", "v=STSv1; id=aaa; id=bbb", Record{Version: "STSv1", ID: "aaa"}},
		{"STS14_concatenated", "v=STSv1; id=12" + "34", Record{Version: "STSv1", ID: "1234"}},
		{"STS14_concatenatedNoSpace", "v=STSv1;" + "id=1", Record{Version: "STSv1", ID: "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRecord(tt.txt)
			if err != nil {
				t.Fatalf("ParseRecord(%q) error: %v", tt.txt, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRecord(%q) mismatch (-want +got):\n%s", tt.txt, diff)
			}
		})
	}
}

func TestParseRecordInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, txt string }{
		{"STS6_lowerVersion", "v=stsv1; id=1"},
		{"STS6_upperV", "V=STSv1; id=1"},
		{"STS6_versionNotFirst", "id=1; v=STSv1"},
		{"STS6_version2", "v=STSv2; id=1"},
		{"STS6_leadingSpace", " v=STSv1; id=1"},
		{"STS6_empty", ""},
		{"STS7_noID", "v=STSv1;"},
		{"STS7_noIDWithExtension", "v=STSv1; ext=1"},
		{"STS7_emptyID", "v=STSv1; id="},
		{"STS7_33chars", "v=STSv1; id=" + strings.Repeat("a", 33)},
		{"STS7_dashes", "v=STSv1; id=2024-01-01"},
		{"STS7_underscore", "v=STSv1; id=a_b"},
		{"STS7_dot", "v=STSv1; id=a.b"},
		{"STS7_upperName", "v=STSv1; ID=1"},
		{"STS7_nonASCII", "v=STSv1; id=ü"},
		{"STS7_invalidLaterDuplicate", "v=STSv1; id=1; id=a_b"},
		{"STS8_trailingSpaceNoSemicolon", "v=STSv1; id=1 "},
		{"STS8_doubleSemicolon", "v=STSv1;; id=1"},
		{"STS8_emptyFieldInside", "v=STSv1; id=1; ; ext=1"},
		{"STS8_doubleTrailingSemicolon", "v=STSv1; id=1;;"},
		{"STS8_noSeparator", "v=STSv1 id=1"},
		{"STS8_newline", "v=STSv1;\nid=1"},
		{"STS9_emptyExtValue", "v=STSv1; id=1; ext="},
		{"STS9_spaceInExtValue", "v=STSv1; id=1; ext=a b"},
		{"STS9_underscoreFirst", "v=STSv1; id=1; _x=1"},
		{"STS9_name33", "v=STSv1; id=1; " + strings.Repeat("x", 33) + "=1"},
		{"STS9_equalsInValue", "v=STSv1; id=1; ext=a=b"},
		{"STS9_noEquals", "v=STSv1; id=1; ext"},
		{"STS13_bogusField", "v=STSv1; id=1; bogus"},
		{"STS17_nonASCIIExtension", "v=STSv1; id=1; e=é"},
		{"STS17_controlCharacter", "v=STSv1; id=1; e=a\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRecord(tt.txt)
			if !errors.Is(err, ErrRecordInvalid) {
				t.Fatalf("ParseRecord(%q) = %+v, %v; want error wrapping ErrRecordInvalid", tt.txt, got, err)
			}
		})
	}
}

func TestSelectRecord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		txts    []string
		wantID  string
		wantErr error
	}{
		{"STS11_discardOthers", []string{"v=spf1 -all", "v=STSv1; id=1"}, "1", nil},
		{"STS11_discardNoSemicolon", []string{"v=STSv1", "v=STSv1x; id=2", "v=STSv1; id=1"}, "1", nil},
		{"STS8_spaceBeforeSemicolonKept", []string{"v=STSv1 ; id=1"}, "1", nil},
		{"STS6_caseMismatchIsNoRecord", []string{"v=stsv1; id=1"}, "", ErrNoRecord},
		{"STS6_upperVIsNoRecord", []string{"V=STSv1; id=1"}, "", ErrNoRecord},
		{"STS6_versionLaterIsNoRecord", []string{"id=1; v=STSv1"}, "", ErrNoRecord},
		{"STS6_version2IsNoRecord", []string{"v=STSv2; id=1"}, "", ErrNoRecord},
		{"STS12_none", nil, "", ErrNoRecord},
		{"STS12_two", []string{"v=STSv1; id=1", "v=STSv1; id=2"}, "", ErrMultipleRecords},
		{"STS12_twoOneInvalid", []string{"v=STSv1; id=1", "v=STSv1; bogus"}, "", ErrMultipleRecords},
		{"STS13_singleInvalid", []string{"v=STSv1; id=1; bogus"}, "", ErrRecordInvalid},
		{"STS17_nonASCII", []string{"v=STSv1; id=1; e=é"}, "", ErrRecordInvalid},
		{"STS14_concatenated", []string{"v=STSv1; id=1234"}, "1234", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := SelectRecord(tt.txts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("SelectRecord(%q) = %+v, %v; want %v", tt.txts, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SelectRecord(%q) error: %v", tt.txts, err)
			}
			if got.ID != tt.wantID {
				t.Errorf("SelectRecord(%q).ID = %q, want %q", tt.txts, got.ID, tt.wantID)
			}
		})
	}
}
