package tlspolicy

import (
	"errors"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, l := range Levels() {
		got, err := ParseLevel(string(l))
		if err != nil || got != l {
			t.Errorf("ParseLevel(%q) = %q, %v; want %q", l, got, err, l)
		}
	}
	for _, s := range []string{"", "Required", "required ", "verify", "dane_only", "mta-sts", "secure"} {
		got, err := ParseLevel(s)
		if !errors.Is(err, ErrUnknownLevel) {
			t.Errorf("ParseLevel(%q) = %q, %v; want ErrUnknownLevel", s, got, err)
		}
	}
}

func TestLevelStrength(t *testing.T) {
	for _, tc := range []struct {
		l                  Level
		requires, verifies bool
	}{
		{LevelNone, false, false},
		{LevelOpportunistic, false, false},
		{LevelRequired, true, false},
		{LevelRequiredVerify, true, true},
	} {
		if got := tc.l.RequiresTLS(); got != tc.requires {
			t.Errorf("%s.RequiresTLS() = %v", tc.l, got)
		}
		if got := tc.l.Verifies(); got != tc.verifies {
			t.Errorf("%s.Verifies() = %v", tc.l, got)
		}
	}
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rule
		ok   bool
	}{
		{"required-verify", Rule{Level: LevelRequiredVerify}, true},
		{"opportunistic override", Rule{Level: LevelOpportunistic, Override: true}, true},
		{"dane-only", Rule{Level: LevelDANEOnly}, true},
		{"", Rule{}, false},
		{"override", Rule{}, false},
		{"required verify", Rule{}, false},
		{"required override extra", Rule{}, false},
		{"bogus override", Rule{}, false},
	} {
		got, err := ParseRule(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			if back, err := ParseRule(got.String()); err != nil || back != got {
				t.Errorf("ParseRule(%q.String()) = %+v, %v", tc.in, back, err)
			}
		}
	}
}
