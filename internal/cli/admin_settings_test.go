package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/settings"
)

type fullHarness struct {
	*adminHarness
	settings *settings.Store
	reports  *admintest.Reports
}

// newFullHarness serves the admin API with a real settings store (generation 1: Sender.EnableMTASTS=true,
// TLSRPT.OrganizationName=Acme), the fake report sender (nil while reportsOff) and a fake TXT lookup.
func newFullHarness(t *testing.T, reportsOff bool) *fullHarness {
	t.Helper()
	q, c := admintest.Fixture()
	st := admintest.OpenSettings(t, map[string]string{"Sender.EnableMTASTS": "true", "TLSRPT.OrganizationName": "Acme"})
	rep := admintest.ReportsFixture()
	s, err := admin.New(admin.Options{
		Token:    cliToken,
		Queue:    q,
		STS:      c,
		Now:      admintest.Now,
		Settings: st,
		Reports: func() admin.ReportsAPI {
			if reportsOff {
				return nil
			}
			return rep
		},
		LookupTLSRPT: func(ctx context.Context, domain string) ([]string, error) {
			switch domain {
			case "example.org":
				return []string{"v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://r.example.org/t"}, nil
			case "nx.example":
				return nil, fmt.Errorf("%w: TXT _smtp._tls.nx.example", dnsx.ErrNotFound)
			}
			return nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fullHarness{adminHarness: &adminHarness{srv: srv, queue: q, sts: c}, settings: st, reports: rep}
}

// mustRun runs a command that must succeed and returns its stdout.
func (h *fullHarness) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := h.run(t, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
	}
	return out
}

// mustFail runs a command that must fail and returns its stderr.
func (h *fullHarness) mustFail(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := h.run(t, args...)
	if code == 0 || out != "" {
		t.Errorf("%v: exit %d, stdout %q; want a failure", args, code, out)
	}
	return errOut
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSettingsAndConfigVerbs(t *testing.T) {
	h := newFullHarness(t, false)

	out := h.mustRun(t, "settings", "set", "Sender.EnableMTASTS", "false")
	if want := "staged: ~ Sender.EnableMTASTS: true -> false\nreview with: mxgate config diff\n"; !strings.HasPrefix(out, want) {
		t.Errorf("settings set: %q, want prefix %q", out, want)
	}
	if out := h.mustRun(t, "settings", "set", "Domain.X.Example.TLS", "required"); !strings.HasPrefix(out, "staged: + Domain.x.example.TLS: required\n") {
		t.Errorf("settings set domain: %q", out)
	}
	if out := h.mustRun(t, "settings", "unset", "TLSRPT.OrganizationName"); !strings.HasPrefix(out, `staged: - TLSRPT.OrganizationName (was "Acme")`+"\n") {
		t.Errorf("settings unset: %q", out)
	}
	if out := h.mustRun(t, "settings", "unset", "TLSRPT.From"); out != "TLSRPT.From is not set: nothing staged\n" {
		t.Errorf("settings unset of an unset key: %q", out)
	}
	if out := h.mustRun(t, "settings", "set", "Sender.EnableMTASTS", "true"); out != "Sender.EnableMTASTS is already true: nothing staged\n" {
		t.Errorf("settings set to the committed value: %q", out)
	}
	h.mustRun(t, "settings", "set", "Sender.EnableMTASTS", "false")

	want := "+ Domain.x.example.TLS: required\n~ Sender.EnableMTASTS: true -> false\n- TLSRPT.OrganizationName (was \"Acme\")\n"
	if diff := cmp.Diff(want, h.mustRun(t, "config", "diff")); diff != "" {
		t.Errorf("config diff (-want +got):\n%s", diff)
	}
	out = h.mustRun(t, "settings", "list")
	for _, w := range []string{
		"KEY                               VALUE  SOURCE   STAGED\n",
		"Controller.EnableTLSRPT           true   default  -\n",
		"Domain.x.example.TLS              -      default  -> required\n",
		"Sender.EnableMTASTS               true   set      -> false\n",
		"TLSRPT.MaxDestinations            4      default  -\n",
		"TLSRPT.OrganizationName           Acme   set      unset\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("settings list:\n%s\ndoes not contain %q", out, w)
		}
	}
	out = h.mustRun(t, "settings", "get", "Sender.EnableMTASTS")
	for _, w := range []string{"key      Sender.EnableMTASTS\n", "kind     bool\n", "value    true\n", "source   set\n", "staged   -> false\n", "help     Validate MTA-STS"} {
		if !strings.Contains(out, w) {
			t.Errorf("settings get:\n%s\ndoes not contain %q", out, w)
		}
	}

	if got := h.mustFail(t, "config", "commit"); !strings.Contains(got, "a note is required") {
		t.Errorf("commit without -m: %q", got)
	}
	if out := h.mustRun(t, "config", "commit", "-m", "MTA-STS off during the migration", "--author", "ann"); out != "committed generation 2\n" {
		t.Errorf("config commit: %q", out)
	}
	if h.settings.Current().Bool("Sender.EnableMTASTS") || h.settings.Current().Generation != 2 {
		t.Errorf("commit not in force: %+v", h.settings.Current())
	}
	if got := h.mustFail(t, "config", "commit", "-m", "again"); got != "mxgate: no staged changes\n" {
		t.Errorf("empty commit: %q", got)
	}
	if out := h.mustRun(t, "config", "diff"); out != "no staged changes (generation 2 is in force)\n" {
		t.Errorf("config diff after commit: %q", out)
	}

	out = h.mustRun(t, "config", "history")
	want = "GENERATION  COMMITTED             AUTHOR  NOTE\n" +
		"2           2025-06-01T10:00:00Z  ann     MTA-STS off during the migration\n" +
		"1           2025-06-01T10:00:00Z  mxgate  initial settings from the bootstrap configuration\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("config history (-want +got):\n%s", diff)
	}
	if out := h.mustRun(t, "config", "rollback", "1", "-m", "back to MTA-STS", "--author", "bob"); out != "rolled back to generation 1: committed generation 3\n" {
		t.Errorf("config rollback: %q", out)
	}
	if out := h.mustRun(t, "config", "history"); !strings.Contains(out, "3           2025-06-01T10:00:00Z  bob     back to MTA-STS (rollback to generation 1)\n") {
		t.Errorf("history after rollback:\n%s", out)
	}
	if !h.settings.Current().Bool("Sender.EnableMTASTS") {
		t.Errorf("rollback not in force")
	}
	if got := h.mustFail(t, "config", "rollback", "9"); got != "mxgate: no such generation 9\n" {
		t.Errorf("rollback 9: %q", got)
	}
	if got := h.mustFail(t, "config", "rollback", "latest"); !strings.Contains(got, `invalid generation "latest"`) {
		t.Errorf("rollback latest: %q", got)
	}

	// apply: the file is the whole truth; TLSRPT.OrganizationName, missing from it, is removed.
	file := writeFile(t, "settings.toml", `# kept in git
[settings]
"Sender.EnableMTASTS" = false
"Domain.example.com.TLS" = "required-verify"
"TLSRPT.MaxDestinations" = 2
`)
	out = h.mustRun(t, "config", "apply", file)
	want = "+ Domain.example.com.TLS: required-verify\n~ Sender.EnableMTASTS: true -> false\n~ TLSRPT.MaxDestinations: 4 -> 2\n" +
		"- TLSRPT.OrganizationName (was \"Acme\")\nstaged 4 changes from " + file + "; commit with: mxgate config commit -m NOTE\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("config apply (-want +got):\n%s", diff)
	}
	if out := h.mustRun(t, "config", "discard"); out != "discarded 4 staged changes\n" {
		t.Errorf("config discard: %q", out)
	}
	if out := h.mustRun(t, "config", "discard"); out != "no staged changes\n" {
		t.Errorf("second discard: %q", out)
	}

	// Unquoted dotted keys mean the same keys.
	file = writeFile(t, "dotted.toml", "[settings]\nSender.EnableMTASTS = true\nTLSRPT.OrganizationName = \"Acme\"\n")
	if out := h.mustRun(t, "config", "apply", file); out != file+" matches generation 3: nothing staged\n" {
		t.Errorf("config apply of the committed settings: %q", out)
	}
}

func TestConfigApplyErrors(t *testing.T) {
	h := newFullHarness(t, false)
	tests := []struct {
		name, content string
		wantErr       []string
	}{
		{"badkey.toml", "[settings]\n\"Sender.EnableMTASTS\" = false\n\"Sender.EnableSTS\" = true\n",
			[]string{"badkey.toml:\n", `unknown setting "Sender.EnableSTS"`}},
		{"badvalue.toml", "[settings]\n\"Domain.example.com.TLS\" = \"strict\"\n\"TLSRPT.OnlyFailures\" = \"often\"\n",
			[]string{`Domain.example.com.TLS: invalid value: unknown TLS level "strict"`, `TLSRPT.OnlyFailures: invalid value: "often" is not a boolean`}},
		{"tables.toml", "[settings]\n\"Sender.EnableMTASTS\" = false\n[domains]\nx = 1\n[routes]\n",
			[]string{"tables.toml: unknown top-level tables [domains], [routes]: only [settings] is allowed"}},
		{"toplevel.toml", "note = \"x\"\n[settings]\n", []string{"unknown top-level table [note]"}},
		{"none.toml", "# empty\n", []string{"no [settings] table"}},
		{"float.toml", "[settings]\n\"TLSRPT.MaxDestinations\" = 2.5\n", []string{`"TLSRPT.MaxDestinations": invalid value: want a boolean, an integer or a string, not float64`}},
		{"twice.toml", "[settings]\n\"Domain.x.TLS\" = \"none\"\n[settings.Domain.x]\nTLS = \"required\"\n", []string{`"Domain.x.TLS" is given twice`}},
		{"syntax.toml", "[settings\n", []string{"syntax.toml: toml:"}},
	}
	for _, tt := range tests {
		errOut := h.mustFail(t, "config", "apply", writeFile(t, tt.name, tt.content))
		for _, w := range tt.wantErr {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q does not contain %q", tt.name, errOut, w)
			}
		}
	}
	if got := h.mustFail(t, "config", "apply", filepath.Join(t.TempDir(), "missing.toml")); !strings.Contains(got, "missing.toml") {
		t.Errorf("missing file: %q", got)
	}
	if changes, err := h.settings.Diff(t.Context()); err != nil || len(changes) != 0 {
		t.Errorf("failed applies staged %v, %v", changes, err)
	}
}

func TestSettingsVerbErrorsAndJSON(t *testing.T) {
	h := newFullHarness(t, false)
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"settings", "set", "Sender.EnableMTA", "true"}, `mxgate: unknown setting "Sender.EnableMTA"`},
		{[]string{"settings", "set", "Sender.EnableMTASTS", "yes please"}, `mxgate: Sender.EnableMTASTS: invalid value: "yes please" is not a boolean`},
		{[]string{"settings", "get", "Nope"}, `mxgate: unknown setting "Nope"`},
		{[]string{"settings", "unset", "Nope"}, `mxgate: unknown setting "Nope"`},
		{[]string{"settings", "set", "Sender.EnableMTASTS"}, "mxgate: accepts 2 arg(s), received 1"},
	} {
		if got := h.mustFail(t, tt.args...); !strings.HasPrefix(got, tt.wantErr) {
			t.Errorf("%v: stderr %q, want prefix %q", tt.args, got, tt.wantErr)
		}
	}

	out := h.mustRun(t, "--json", "settings", "set", "Sender.EnableMTASTS", "false")
	var s admin.Setting
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Staged == nil || s.Staged.New != "false" {
		t.Errorf("settings set --json: %v, %s", err, out)
	}
	out = h.mustRun(t, "config", "diff", "--json")
	var d admin.ConfigDiff
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Generation != 1 || len(d.Changes) != 1 {
		t.Errorf("config diff --json: %v, %s", err, out)
	}
	out = h.mustRun(t, "--json", "config", "commit", "-m", "n")
	var c admin.CommitResult
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Generation != 2 || c.Values["Sender.EnableMTASTS"] != "false" {
		t.Errorf("config commit --json: %v, %s", err, out)
	}
	for _, args := range [][]string{{"settings", "list"}, {"settings", "get", "Sender.EnableMTASTS"}, {"config", "history"}} {
		if out := h.mustRun(t, append([]string{"--json"}, args...)...); !json.Valid([]byte(out)) {
			t.Errorf("%v --json: %q", args, out)
		}
	}
}

// What a component would refuse is refused by the CLI with the component's reason, at staging (a bad value)
// or at commit (a generation only the staged changes together make invalid), and nothing is committed.
func TestSettingsRefusedByComponent(t *testing.T) {
	h := newFullHarness(t, false)
	h.settings.AddCheck(admintest.TLSRPTCheck)
	errOut := h.mustFail(t, "settings", "set", "TLSRPT.ContactInfo", "notanemail")
	if !strings.Contains(errOut, `TLSRPT.ContactInfo: invalid value: tlsrpt refuses it: "notanemail" has no domain`) {
		t.Errorf("set notanemail: stderr %q", errOut)
	}
	h.mustRun(t, "settings", "set", "TLSRPT.DKIMKeyFile", "/etc/mxgate/dkim.pem")
	errOut = h.mustFail(t, "config", "commit", "-m", "sign reports")
	if !strings.Contains(errOut, "refused by tlsrpt: TLSRPT.DKIMSelector: required with TLSRPT.DKIMKeyFile") {
		t.Errorf("commit: stderr %q", errOut)
	}
	if g := h.settings.Current().Generation; g != 1 {
		t.Errorf("generation %d in force after a refused commit, want 1", g)
	}
}

// config rollback refuses while changes are staged, naming them and the flag that drops them; with
// --discard-staged it says what it dropped; rolling back to the settings in force commits nothing.
func TestRollbackStagedAndNoOp(t *testing.T) {
	h := newFullHarness(t, false)
	h.mustRun(t, "settings", "set", "Sender.EnableMTASTS", "false")
	h.mustRun(t, "config", "commit", "-m", "off")
	h.mustRun(t, "settings", "set", "TLSRPT.OnlyFailures", "true")

	errOut := h.mustFail(t, "config", "rollback", "1")
	for _, want := range []string{"changes are staged: 1 (TLSRPT.OnlyFailures)", "--discard-staged"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("rollback with a staged change: stderr %q lacks %q", errOut, want)
		}
	}
	if g := h.settings.Current().Generation; g != 2 {
		t.Fatalf("generation %d after a refused rollback, want 2", g)
	}
	out := h.mustRun(t, "config", "rollback", "1", "--discard-staged")
	if want := "discarded staged change: TLSRPT.OnlyFailures\nrolled back to generation 1: committed generation 3\n"; out != want {
		t.Errorf("rollback --discard-staged = %q, want %q", out, want)
	}
	out = h.mustRun(t, "config", "rollback", "1")
	if want := "generation 1 has the settings in force (generation 3): nothing to roll back\n"; out != want {
		t.Errorf("rollback to the settings in force = %q, want %q", out, want)
	}
	if g := h.settings.Current().Generation; g != 3 {
		t.Errorf("generation %d after a no-op rollback, want 3", g)
	}
}
