// Package testenv holds what tests share about the machine they run on.
package testenv

import (
	"os"
	"os/exec"
	"strings"
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

// Tmpfs mounts a tmpfs of the given size ("4m") on dir, creating dir, and unmounts it in t.Cleanup: a small
// file system to fill. It needs root (and CAP_SYS_ADMIN); without them it is a missing dependency.
func Tmpfs(t testing.TB, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		MissingDependency(t, "a full-disk test needs root to mount a tmpfs (run as root, e.g. in .ci/run)")
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		MissingDependency(t, "full-disk test: mount -t tmpfs failed: %v: %s", err, strings.TrimSpace(string(out)))
		return
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}
