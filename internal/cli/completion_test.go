package cli

import (
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/admin/admintest"
)

// TestArgumentCompletion: TAB completes message IDs, domains, setting names and generations from the
// running gateway (cobra's hidden __complete command is what the shell scripts call).
func TestArgumentCompletion(t *testing.T) {
	h := newFullHarness(t, false)
	h.mustRun(t, "settings", "set", "Domain.rule.example.TLS", "required")
	h.mustRun(t, "config", "commit", "-m", "a rule")
	tests := []struct {
		args    []string
		want    []string
		notWant []string
	}{
		{[]string{"queue", "show", ""}, []string{admintest.MsgQueued, admintest.MsgHeld}, nil},
		{[]string{"queue", "hold", ""}, []string{admintest.MsgQueued}, nil},
		{[]string{"settings", "get", "Sender."}, []string{"Sender.EnableMTASTS"}, []string{"Controller.EnableTLSRPT"}},
		{[]string{"settings", "set", "Sender.EnableMTASTS", ""}, nil, []string{"Sender.EnableMTASTS"}},
		{[]string{"policy", "explain", ""}, []string{"example.org", "rule.example"}, nil},
		{[]string{"sts", "cache", "show", "example.o"}, []string{"example.org"}, []string{"rule.example"}},
		{[]string{"config", "rollback", ""}, []string{"1", "2"}, nil},
	}
	for _, tt := range tests {
		code, out, errOut := h.run(t, append([]string{"__complete"}, tt.args...)...)
		if code != 0 || !strings.Contains(errOut, "ShellCompDirectiveNoFileComp") {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if last := lines[len(lines)-1]; last != ":4" {
			t.Errorf("%v: directive %q, want :4 (no file completion)", tt.args, last)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, "\n"+w+"\n") && !strings.HasPrefix(out, w+"\n") {
				t.Errorf("%v: completions\n%s\nlack %q", tt.args, out, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(out, w+"\n") {
				t.Errorf("%v: completions\n%s\ninclude %q", tt.args, out, w)
			}
		}
	}
}
