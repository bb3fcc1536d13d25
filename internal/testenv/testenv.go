// Package testenv holds what tests share about the machine they run on.
package testenv

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under CI, which sets CI=true.
func InCI() bool { return os.Getenv("CI") == "true" }

// MissingDependency skips the test outside CI and fails it under CI: a dependency that CI installs (Chromium,
// PostgreSQL, a second loopback address) must never be silently missing there.
func MissingDependency(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and a test dependency is missing: "+format, args...)
		return
	}
	t.Skipf(format, args...)
}
