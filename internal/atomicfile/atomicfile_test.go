package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// leftovers lists dir's files other than want.
func leftovers(t *testing.T, dir string, want ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !slices.Contains(want, e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func readFile(t *testing.T, path string) (string, fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), fi.Mode().Perm()
}

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.token")
	if err := Create(path, []byte("first\n"), 0o600); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got, perm := readFile(t, path); got != "first\n" || perm != 0o600 {
		t.Errorf("file = %q mode %v, want %q mode 0600", got, perm, "first\n")
	}
	err := Create(path, []byte("second\n"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file = %v, want fs.ErrExist", err)
	}
	if got, _ := readFile(t, path); got != "first\n" {
		t.Errorf("the existing file became %q", got)
	}
	if extra := leftovers(t, dir, "admin.token"); len(extra) > 0 {
		t.Errorf("temporary files left: %v", extra)
	}
}

// TestCreateConcurrent: of creators racing on one name exactly one wins and the file is whole.
func TestCreateConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Create(path, []byte{byte('a' + i)}, 0o600)
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("creators %d and %d both succeeded", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("creator %d: %v", i, err)
		}
	}
	if got, _ := readFile(t, path); won < 0 || got != string(rune('a'+won)) {
		t.Errorf("file holds %q; winner %d", got, won)
	}
	if extra := leftovers(t, dir, "f"); len(extra) > 0 {
		t.Errorf("temporary files left: %v", extra)
	}
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "console.password")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, []byte("new"), 0o600); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if got, perm := readFile(t, path); got != "new" || perm != 0o600 {
		t.Errorf("file = %q mode %v, want %q mode 0600", got, perm, "new")
	}
	if extra := leftovers(t, dir, "console.password"); len(extra) > 0 {
		t.Errorf("temporary files left: %v", extra)
	}
}

// TestReplaceFails: when the file cannot be put in place the error says so, the target is untouched and no
// temporary file is left.
func TestReplaceFails(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "busy")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Replace(target, []byte("data"), 0o600); err == nil {
		t.Fatal("Replace over a non-empty directory succeeded")
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		t.Errorf("target changed: %v, %v", fi, err)
	}
	if extra := leftovers(t, dir, "busy"); len(extra) > 0 {
		t.Errorf("temporary files left: %v", extra)
	}
	if err := Create(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create in a missing directory = %v, want fs.ErrNotExist", err)
	}
}
