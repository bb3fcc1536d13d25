package testenv

import (
	"testing"
)

// fakeTB records whether MissingDependency skipped or failed.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

func TestMissingDependencyFailsUnderCI(t *testing.T) {
	for _, tt := range []struct {
		ci                 string
		wantSkip, wantFail bool
	}{
		{ci: "true", wantFail: true},
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
	} {
		t.Setenv("CI", tt.ci)
		f := &fakeTB{}
		MissingDependency(f, "chromium not found")
		if f.skipped != tt.wantSkip || f.failed != tt.wantFail {
			t.Errorf("CI=%q: skipped=%v failed=%v, want skipped=%v failed=%v", tt.ci, f.skipped, f.failed, tt.wantSkip, tt.wantFail)
		}
	}
}
