package console

import (
	"context"
	"testing"

	"github.com/mxgate/mxgate/internal/admin/admintest"
)

// A change asks for confirmation exactly when it weakens what the domain gets, as the TLS decision point
// decides it: a rule only raises the domain's MTA-STS level unless it says "override" (example.org has a
// cached enforce policy in the fixture, nopolicy.example has none).
func TestLowersTLS(t *testing.T) {
	ctx := context.Background()
	_, sts := admintest.Fixture()
	st := admintest.OpenSettings(t, map[string]string{"Sender.EnableMTASTS": "true", "Domain.committed.example.TLS": "required-verify"})
	c := &Console{opts: Options{STS: sts, Settings: st}}
	if err := st.Set(ctx, "Domain.staged.example.TLS", "required"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain, value string
		unset, want   bool
	}{
		{"nopolicy.example", "none", false, false}, // a rule never goes below the default without override
		{"nopolicy.example", "none override", false, true},
		{"nopolicy.example", "opportunistic", false, false},
		{"nopolicy.example", "required", false, false},
		{"example.org", "opportunistic", false, false}, // MTA-STS enforce still applies
		{"example.org", "opportunistic override", false, true},
		{"example.org", "required-verify override", false, false},
		{"committed.example", "required", false, true},
		{"committed.example", "dane-only", false, false},
		{"committed.example", "", true, true},
		{"staged.example", "none", false, true},
		{"staged.example", "opportunistic", false, true},
		{"staged.example", "required-verify", false, false},
	} {
		_, got := c.lowersTLS(ctx, "Domain."+tc.domain+".TLS", tc.value, tc.unset)
		if got != tc.want {
			t.Errorf("%s: value %q unset %v: lowers = %v, want %v", tc.domain, tc.value, tc.unset, got, tc.want)
		}
	}
	if _, got := c.lowersTLS(ctx, "Sender.EnableMTASTS", "false", false); got {
		t.Error("a global setting counted as a domain's TLS")
	}
}
