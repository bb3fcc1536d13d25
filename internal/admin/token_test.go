package admin_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/mxgate/mxgate/internal/admin"
)

func TestLoadOrCreateToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tok, created, err := admin.LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
		t.Errorf("first call: token %q, created %v; want 64 hex digits, created", tok, created)
	}
	path := admin.TokenPath(dir)
	for name, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	if admin.TokenFileInsecure(path) {
		t.Errorf("fresh token file reported insecure")
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("data dir holds %v (%v), want only the token file", entries, err)
	}

	again, created, err := admin.LoadOrCreateToken(dir)
	if err != nil || created || again != tok {
		t.Errorf("second call: %q, %v, %v; want the same token, not created", again, created, err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if !admin.TokenFileInsecure(path) {
		t.Errorf("mode 0644 not reported insecure")
	}
	if admin.TokenFileInsecure(filepath.Join(dir, "missing")) {
		t.Errorf("missing file reported insecure")
	}
}

func TestLoadOrCreateTokenRejectsEmptyFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(admin.TokenPath(dir), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, _, err := admin.LoadOrCreateToken(dir); err == nil {
		t.Errorf("empty token file accepted: %q", tok)
	}
}
