package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
)

// runIn runs the command line against the harness with stdin as standard input.
func (h *adminHarness) runIn(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = mainIO(append([]string{"--admin", h.srv.URL, "--token", cliToken}, args...), strings.NewReader(stdin), &out, &errb, osEnvironment())
	return code, out.String(), errb.String()
}

// TestQueueRetryAll is postqueue -f: every queued message that is not held is due now, and the count shown.
func TestQueueRetryAll(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	code, out, errs := h.runIn(t, "", "queue", "retry", "--all")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if out != "1 message (1 recipient) made due now\n" {
		t.Errorf("stdout %q", out)
	}
	if diff := cmp.Diff([]string{"retry " + admintest.MsgQueued}, h.queue.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestQueueBulkFiltersCLI(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	code, out, errs := h.runIn(t, "", "queue", "hold", "--domain", "example.org", "--result-type", "certificate-host-mismatch", "--older-than", "90m")
	if code != 0 || out != "1 message (1 recipient) held\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = h.runIn(t, "", "queue", "release", "--held")
	if code != 0 || out != "2 messages (2 recipients) released\n" {
		t.Fatalf("release --held: exit %d, stdout %q", code, out)
	}
	want := []string{"hold " + admintest.MsgQueued, "release " + admintest.MsgQueued, "release " + admintest.MsgHeld}
	if diff := cmp.Diff(want, h.queue.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// TestQueueBulkDestructiveConfirms: delete and bounce over a selection ask first; only "y" goes on, no
// answer at all refuses, and --yes skips the question. --dry-run changes nothing.
func TestQueueBulkDestructiveConfirms(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	code, out, errs := h.runIn(t, "", "queue", "delete", "--all", "--dry-run")
	if code != 0 || out != "would delete 2 messages (2 recipients) (2 matching); nothing changed\n" {
		t.Fatalf("dry run: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = h.runIn(t, "n\n", "queue", "delete", "--all")
	if code == 0 || !strings.Contains(errs, "Delete 2 messages (2 recipients)? [y/N]") || !strings.Contains(errs, "not confirmed: nothing was deleted") {
		t.Fatalf("answered n: exit %d, stderr %q", code, errs)
	}
	code, _, errs = h.runIn(t, "", "queue", "bounce", "--domain", "example.org")
	if code == 0 || !strings.Contains(errs, "pass --yes") {
		t.Fatalf("no answer: exit %d, stderr %q", code, errs)
	}
	if c := h.queue.Calls(); len(c) != 0 {
		t.Fatalf("unconfirmed actions changed the queue: %v", c)
	}
	code, out, errs = h.runIn(t, "y\n", "queue", "bounce", "--domain", "example.org")
	if code != 0 || !strings.HasPrefix(out, "1 message (1 recipient) bounced") {
		t.Fatalf("answered y: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = h.runIn(t, "", "queue", "delete", "--held", "--yes", "--json")
	if code != 0 {
		t.Fatalf("--yes: exit %d, stderr %q", code, errs)
	}
	if strings.Contains(errs, "[y/N]") {
		t.Errorf("--yes still asked: %q", errs)
	}
	var res admin.BulkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Affected != 1 || res.IDs[0] != admintest.MsgHeld {
		t.Fatalf("--json: %q (%v)", out, err)
	}
	want := []string{"bounce " + admintest.MsgQueued, "delete " + admintest.MsgHeld}
	if diff := cmp.Diff(want, h.queue.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestQueueBulkUsageErrors(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "retry"}, "give a message ID, --all, or a filter"},
		{[]string{"queue", "retry", admintest.MsgQueued, "--all"}, "not both"},
		{[]string{"queue", "delete", "--all", "--domain", "example.org"}, "cannot be combined"},
		{[]string{"queue", "hold", "--older-than", "soon"}, `--older-than: invalid age "soon"`},
		{[]string{"queue", "bounce", admintest.MsgQueued, "--yes"}, "apply to bulk actions"},
	} {
		code, _, errs := h.runIn(t, "", tt.args...)
		if code == 0 || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error mentioning %q", tt.args, code, errs, tt.want)
		}
	}
	if c := h.queue.Calls(); len(c) != 0 {
		t.Errorf("usage errors changed the queue: %v", c)
	}
}
