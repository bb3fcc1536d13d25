package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// documentedEvents reads docs/logs.md: the keys of the `delivery` event (its table's first column) and of
// each event of the "Other events" table, by log message.
func documentedEvents(t *testing.T, path string) map[string][]string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	keysOf := func(cell string) []string {
		// Keys are the backquoted words outside parentheses: "`smtp` (the bound `x`), `data_dir`".
		depth, plain := 0, strings.Builder{}
		for _, r := range cell {
			switch r {
			case '(':
				depth++
			case ')':
				depth--
			default:
				if depth == 0 {
					plain.WriteRune(r)
				}
			}
		}
		var keys []string
		for _, m := range code.FindAllStringSubmatch(plain.String(), -1) {
			keys = append(keys, m[1])
		}
		return keys
	}
	events := map[string][]string{}
	section := ""
	for line := range strings.SplitSeq(string(src), "\n") {
		if strings.HasPrefix(line, "## ") {
			section = strings.TrimPrefix(line, "## ")
			continue
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		switch section {
		case "`delivery` events":
			events["delivery"] = append(events["delivery"], keysOf(cells[0])...)
		case "Other events":
			if len(cells) != 3 {
				t.Errorf("logs.md: %q: want 3 cells (message, component and level, keys)", line)
				continue
			}
			msg := keysOf(cells[0])
			if len(msg) != 1 {
				t.Errorf("logs.md: %q: want one message in the first cell", line)
				continue
			}
			events[msg[0]] = keysOf(cells[2])
		}
	}
	return events
}

// slogMethods maps the slog.Logger methods to the index of their message argument.
var slogMethods = map[string]int{
	"Debug": 0, "Info": 0, "Warn": 0, "Error": 0,
	"DebugContext": 1, "InfoContext": 1, "WarnContext": 1, "ErrorContext": 1,
	"Log": 2,
}

// loggedKeys parses the module's non-test Go files and returns, for each log call whose message is one of
// msgs, the keys it logs (string literal keys and slog.Attr constructors such as slog.String("k", v)),
// with the call's position.
func loggedKeys(t *testing.T, root string, msgs map[string][]string) map[string][][]string {
	t.Helper()
	found := map[string][][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			i, ok := slogMethods[sel.Sel.Name]
			if !ok || len(call.Args) <= i {
				return true
			}
			msg, ok := stringLit(call.Args[i])
			if _, documented := msgs[msg]; !ok || !documented {
				return true
			}
			var keys []string
			args := call.Args[i+1:]
			for len(args) > 0 {
				if k, ok := stringLit(args[0]); ok {
					keys = append(keys, k)
					args = args[min(2, len(args)):]
					continue
				}
				if c, ok := args[0].(*ast.CallExpr); ok && len(c.Args) > 0 {
					if k, ok := stringLit(c.Args[0]); ok {
						keys = append(keys, k)
						args = args[1:]
						continue
					}
				}
				t.Errorf("%s: log %q: cannot read a key from %T", fset.Position(call.Pos()), msg, args[0])
				break
			}
			found[msg] = append(found[msg], keys)
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// TestLogKeysDocumented: every event docs/logs.md describes is logged by the code with exactly the keys it
// lists, no more and no fewer.
func TestLogKeysDocumented(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	docs := documentedEvents(t, filepath.Join(root, "docs", "logs.md"))
	for _, want := range []string{"delivery", "mxgate running"} {
		if len(docs[want]) == 0 {
			t.Errorf("logs.md documents no keys for %q", want)
		}
	}
	logged := loggedKeys(t, root, docs)
	for msg, want := range docs {
		calls := logged[msg]
		if len(calls) == 0 {
			t.Errorf("logs.md documents %q, but no log call has that message", msg)
		}
		slices.Sort(want)
		for _, got := range calls {
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%q is logged with keys %q; logs.md lists %q", msg, got, want)
			}
		}
	}
}
