// Package docs checks that the documentation in docs/ stays true to the code: that the RFC support table
// docs/rfc.md lists every MTA-STS item and names tests that exist, as the go command sees them (`go test
// -list` for tests, a run for subtests), not as a grep of the sources would; and that the log schema
// docs/logs.md lists exactly the keys the code's log calls use (read from the parsed sources).
package docs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/testenv"
)

// stsItems is the number of RFC 8461 items in REQUIREMENTS.md section 1 (STS-1 … STS-95).
const stsItems = 95

// statuses are the allowed first words of the Status column.
var statuses = []string{"implemented", "partial", "not implemented", "N/A"}

var (
	itemRe = regexp.MustCompile(`^(STS|RPT|DANE|REQ|SMTP)-([0-9]+)$`)
	testRe = regexp.MustCompile("`([a-z0-9]+)\\.((?:Test|Fuzz)[A-Za-z0-9_]*)(/[^`]*)?`")
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

// goCmd runs the go command in the module root and returns its standard output.
func goCmd(t *testing.T, root string, args ...string) []byte {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testenv.MissingDependency(t, "the go command, to list the tests docs/rfc.md names: %v", err)
	}
	cmd := exec.Command(gobin, args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s%s", strings.Join(args, " "), err, stderr.Bytes(), out)
	}
	return out
}

// testEvent is the part of a `go test -json` event read here.
type testEvent struct {
	Action, Package, Test, Output string
}

func readEvents(t *testing.T, out []byte) []testEvent {
	t.Helper()
	var evs []testEvent
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var ev testEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("go test -json output: %v", err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// packagePaths maps the module's package names to their import paths (names are unique in the module).
func packagePaths(t *testing.T, root string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(goCmd(t, root, "list", "-f", "{{.Name}} {{.ImportPath}}", "./..."))), "\n") {
		name, path, _ := strings.Cut(line, " ")
		if prev, dup := paths[name]; dup {
			t.Fatalf("package name %s is both %s and %s: rfc.md references would be ambiguous", name, prev, path)
		}
		paths[name] = path
	}
	return paths
}

// listTests asks `go test -list` for the top-level tests and fuzz targets of the import paths, by path.
func listTests(t *testing.T, root string, paths []string) map[string]map[string]bool {
	t.Helper()
	args := append([]string{"test", "-json", "-list", "^(Test|Fuzz)"}, paths...)
	listed := map[string]map[string]bool{}
	for _, ev := range readEvents(t, goCmd(t, root, args...)) {
		name := strings.TrimSpace(ev.Output)
		if ev.Action != "output" || ev.Test != "" || !strings.HasPrefix(name, "Test") && !strings.HasPrefix(name, "Fuzz") {
			continue
		}
		if listed[ev.Package] == nil {
			listed[ev.Package] = map[string]bool{}
		}
		listed[ev.Package][name] = true
	}
	return listed
}

// runSubtests runs exactly the named subtests (and their parents' setup) and returns, by import path and
// full test name, the last action go test reported for each test that ran: pass, fail or skip. Subtests
// exist only when run: `go test -list` does not see them.
func runSubtests(t *testing.T, root string, refs map[string][]testRef) map[string]map[string]string {
	t.Helper()
	var parents, subs, paths []string
	for path, rs := range refs {
		paths = append(paths, path)
		for _, r := range rs {
			parents = append(parents, regexp.QuoteMeta(r.name))
			for i, part := range strings.Split(strings.TrimPrefix(r.sub, "/"), "/") {
				if i == 0 {
					subs = append(subs, regexp.QuoteMeta(part))
				}
			}
		}
	}
	slices.Sort(paths)
	slices.Sort(parents)
	slices.Sort(subs)
	run := "^(" + strings.Join(slices.Compact(parents), "|") + ")$/^(" + strings.Join(slices.Compact(subs), "|") + ")$"
	args := append([]string{"test", "-json", "-timeout", "10m", "-run", run}, paths...)
	results := map[string]map[string]string{}
	for _, ev := range readEvents(t, goCmd(t, root, args...)) {
		switch ev.Action {
		case "run", "pass", "fail", "skip":
		default:
			continue
		}
		if ev.Test == "" {
			continue
		}
		if results[ev.Package] == nil {
			results[ev.Package] = map[string]string{}
		}
		results[ev.Package][ev.Test] = ev.Action
	}
	return results
}

func TestRFCTable(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	rows := parseTable(t, filepath.Join(root, "docs", "rfc.md"))
	pkgs := packagePaths(t, root)
	var paths []string
	subRefs := map[string][]testRef{}
	for _, r := range rows {
		for _, ref := range r.tests {
			path, ok := pkgs[ref.pkg]
			if !ok {
				t.Errorf("rfc.md:%d: %s lists %s, but the module has no package %s", r.line, r.item, ref, ref.pkg)
				continue
			}
			paths = append(paths, path)
			if ref.sub != "" {
				subRefs[path] = append(subRefs[path], ref)
			}
		}
	}
	slices.Sort(paths)
	listed := listTests(t, root, slices.Compact(paths))
	ran := runSubtests(t, root, subRefs)

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
			path, ok := pkgs[ref.pkg]
			switch {
			case !ok:
				// Reported above.
			case !listed[path][ref.name]:
				t.Errorf("rfc.md:%d: %s lists %s, but go test -list %s does not list %s", r.line, r.item, ref, path, ref.name)
			case ref.sub == "":
			case ran[path][ref.name+ref.sub] == "":
				t.Errorf("rfc.md:%d: %s lists %s, but %s has no such subtest (go test -run)", r.line, r.item, ref, ref.name)
			case ran[path][ref.name+ref.sub] == "skip":
				t.Errorf("rfc.md:%d: %s lists %s, which skips", r.line, r.item, ref)
			}
		}
	}
	for i := 1; i <= stsItems; i++ {
		if item := fmt.Sprintf("STS-%d", i); seen[item] == 0 {
			t.Errorf("rfc.md does not list %s", item)
		}
	}
}
