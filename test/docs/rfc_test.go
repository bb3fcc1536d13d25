// Package docs checks that the documentation in docs/ stays true to the code: today, that the RFC support
// table docs/rfc.md lists every MTA-STS item and names tests that exist.
package docs

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stsItems is the number of RFC 8461 items in REQUIREMENTS.md section 1 (STS-1 … STS-95).
const stsItems = 95

// statuses are the allowed first words of the Status column.
var statuses = []string{"implemented", "partial", "not implemented", "N/A"}

var (
	itemRe  = regexp.MustCompile(`^(STS|RPT|DANE|REQ|SMTP)-([0-9]+)$`)
	testRe  = regexp.MustCompile("`([a-z0-9]+)\\.((?:Test|Fuzz)[A-Za-z0-9_]*)(/[^`]*)?`")
	funcRe  = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]*)\(`)
	pkgRe   = regexp.MustCompile(`(?m)^package ([a-z0-9_]+)`)
	skipDir = map[string]bool{".git": true, "testdata": true, "node_modules": true, "vendor": true}
)

// row is one item of the table.
type row struct {
	line   int
	item   string
	status string
	tests  []testRef
}

type testRef struct{ pkg, name, sub string }

func (r testRef) String() string { return r.pkg + "." + r.name + r.sub }

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// parseTable reads every table row of rfc.md whose first cell is a requirement number.
func parseTable(t *testing.T, path string) []row {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !itemRe.MatchString(cells[0]) {
			continue
		}
		if len(cells) != 5 {
			t.Errorf("rfc.md:%d: %s has %d columns, want 5 (Item, Level, What, Status, Test)", n, cells[0], len(cells))
			continue
		}
		r := row{line: n, item: cells[0], status: cells[3]}
		for _, m := range testRe.FindAllStringSubmatch(cells[4], -1) {
			r.tests = append(r.tests, testRef{pkg: m[1], name: m[2], sub: m[3]})
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// testFuncs returns the Test and Fuzz functions of the module's *_test.go files, by package name and by
// directory name (the two differ only for main packages and the like).
func testFuncs(t *testing.T, root string) map[string]map[string]bool {
	t.Helper()
	funcs := map[string]map[string]bool{}
	add := func(pkg, name string) {
		if funcs[pkg] == nil {
			funcs[pkg] = map[string]bool{}
		}
		funcs[pkg][name] = true
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (skipDir[d.Name()] || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := filepath.Base(filepath.Dir(path))
		if m := pkgRe.FindSubmatch(src); m != nil {
			pkg2 := strings.TrimSuffix(string(m[1]), "_test")
			for _, f := range funcRe.FindAllSubmatch(src, -1) {
				add(pkg2, string(f[1]))
			}
		}
		for _, f := range funcRe.FindAllSubmatch(src, -1) {
			add(pkg, string(f[1]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return funcs
}

func TestRFCTable(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	rows := parseTable(t, filepath.Join(root, "docs", "rfc.md"))
	funcs := testFuncs(t, root)

	seen := map[string]int{}
	for _, r := range rows {
		if prev, dup := seen[r.item]; dup {
			t.Errorf("rfc.md:%d: %s listed again (first on line %d)", r.line, r.item, prev)
		}
		seen[r.item] = r.line

		known := false
		for _, s := range statuses {
			if r.status == s || strings.HasPrefix(r.status, s+" (") {
				known = true
			}
		}
		if !known {
			t.Errorf("rfc.md:%d: %s has status %q, want one of %q (optionally followed by a note in parentheses)",
				r.line, r.item, r.status, statuses)
		}
		if (r.status == "implemented" || strings.HasPrefix(r.status, "implemented (")) && len(r.tests) == 0 {
			t.Errorf("rfc.md:%d: %s is implemented but lists no test", r.line, r.item)
		}
		for _, ref := range r.tests {
			if !funcs[ref.pkg][ref.name] {
				t.Errorf("rfc.md:%d: %s lists %s, but no *_test.go file of package %s has func %s",
					r.line, r.item, ref, ref.pkg, ref.name)
			}
		}
	}
	for i := 1; i <= stsItems; i++ {
		if item := fmt.Sprintf("STS-%d", i); seen[item] == 0 {
			t.Errorf("rfc.md does not list %s", item)
		}
	}
}
