package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
)

func TestTLSRPTVerbs(t *testing.T) {
	h := newFullHarness(t, false)

	out := h.mustRun(t, "tlsrpt", "lookup", "Example.ORG")
	want := "name    _smtp._tls.example.org\nvalid   yes\nrua[0]  mailto:tlsrpt@example.org\nrua[1]  https://r.example.org/t\n" +
		"txt[0]  \"v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://r.example.org/t\"\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("tlsrpt lookup (-want +got):\n%s", diff)
	}
	if out := h.mustRun(t, "tlsrpt", "lookup", "nx.example"); !strings.Contains(out, "valid  no: tlsrpt: no TLSRPT record: _smtp._tls.nx.example: no such name\ntxt    -\n") {
		t.Errorf("tlsrpt lookup nx.example:\n%s", out)
	}

	out = h.mustRun(t, "tlsrpt", "pending")
	want = "DAY         DOMAIN       POLICIES  SUCCESSFUL  FAILED  REPORT ID\n" +
		"2025-05-31  example.org  1         9           2       2025-05-31T00:00:00Z_example.org_r1\n" +
		"2025-06-01  example.net  1         3           0       -\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("tlsrpt pending (-want +got):\n%s", diff)
	}

	out = h.mustRun(t, "tlsrpt", "preview", "example.org", "--day", "2025-05-31")
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep["report-id"] != "2025-05-31T00:00:00Z_example.org_r1" ||
		!strings.Contains(out, `"result-type": "certificate-host-mismatch"`) {
		t.Errorf("tlsrpt preview: %v\n%s", err, out)
	}
	if out := h.mustRun(t, "tlsrpt", "preview", "example.net"); !strings.Contains(out, `"policy-type": "no-policy-found"`) {
		t.Errorf("tlsrpt preview (today):\n%s", out)
	}

	out = h.mustRun(t, "tlsrpt", "send", "--day", "2025-05-31")
	want = "reports of 2025-05-31:\n" +
		"DOMAIN       STATUS  REPORT ID                            DESTINATION                DELIVERY  DETAIL\n" +
		"example.org  sent    2025-05-31T00:00:00Z_example.org_r1  mailto:tlsrpt@example.org  queued    -\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("tlsrpt send --day (-want +got):\n%s", diff)
	}
	out = h.mustRun(t, "--json", "tlsrpt", "send", "--today")
	var res admin.SendResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Day != "2025-06-01" || len(res.Domains) != 1 {
		t.Errorf("tlsrpt send --today --json: %v, %s", err, out)
	}
	out = h.mustRun(t, "tlsrpt", "sent")
	for _, w := range []string{
		"DAY         DOMAIN       DESTINATION                STATUS  ATTEMPTS  LAST ATTEMPT          NEXT ATTEMPT  MSG ID           LAST ERROR\n",
		"2025-05-31  example.org  mailto:tlsrpt@example.org  queued  1         2025-06-01T10:00:00Z  -             msg-example.org  -\n",
		"2025-06-01  example.net  mailto:tlsrpt@example.net  queued",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("tlsrpt sent:\n%s\ndoes not contain %q", out, w)
		}
	}
	if out := h.mustRun(t, "tlsrpt", "pending"); out != "no pending reports\n" {
		t.Errorf("pending after sending: %q", out)
	}
	if diff := cmp.Diff([]string{"send 2025-05-31", "send-partial 2025-06-01"}, h.reports.Calls()); diff != "" {
		t.Errorf("sender calls (-want +got):\n%s", diff)
	}

	if out := h.mustRun(t, "tlsrpt", "suppress", "add", "mailto:Reports@Example.net", "--note", "bounces"); out != "suppressed reports@example.net: it receives no TLS reports\n" {
		t.Errorf("suppress add: %q", out)
	}
	h.mustRun(t, "tlsrpt", "suppress", "add", "https://r.example.org/t")
	if out := h.mustRun(t, "tlsrpt", "suppress", "rm", "https://r.example.org/t"); out != "removed https://r.example.org/t from the suppression list\n" {
		t.Errorf("suppress rm URL: %q", out)
	}
	out = h.mustRun(t, "tlsrpt", "suppress", "list")
	want = "ENTRY                ADDED                 NOTE\n" +
		"abuse@example.com    2025-05-31T10:00:00Z  asked to stop\n" +
		"reports@example.net  2025-06-01T10:00:00Z  bounces\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("suppress list (-want +got):\n%s", diff)
	}
}

func TestTLSRPTVerbErrors(t *testing.T) {
	h := newFullHarness(t, false)
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"tlsrpt", "send", "--day", "2025-06-01"}, `mxgate: tlsreport: the day is not over yet: 2025-06-01 (send the current day with "today": true)`},
		{[]string{"tlsrpt", "send", "--day", "2025-05-31", "--today"}, "mxgate: give --day or --today, not both"},
		{[]string{"tlsrpt", "send", "--day", "31/05/2025"}, `mxgate: invalid --day "31/05/2025"`},
		{[]string{"tlsrpt", "preview", "example.org"}, "mxgate: tlsreport: no sessions recorded for example.org on 2025-06-01"},
		{[]string{"tlsrpt", "preview", "example.org", "--day", "May 31"}, `mxgate: invalid --day "May 31"`},
		{[]string{"tlsrpt", "lookup", "a..b"}, "mxgate: invalid domain"},
		{[]string{"tlsrpt", "suppress", "rm", "never@example.org"}, `mxgate: "never@example.org" is not on the suppression list`},
		{[]string{"tlsrpt", "suppress", "add", "a b"}, `mxgate: invalid suppression entry "a b"`},
	} {
		if got := h.mustFail(t, tt.args...); !strings.HasPrefix(got, tt.wantErr) {
			t.Errorf("%v: stderr %q, want prefix %q", tt.args, got, tt.wantErr)
		}
	}
	if calls := h.reports.Calls(); len(calls) != 0 {
		t.Errorf("failed verbs reached the sender: %v", calls)
	}

	off := newFullHarness(t, true)
	for _, args := range [][]string{{"tlsrpt", "pending"}, {"tlsrpt", "send", "--today"}, {"tlsrpt", "suppress", "list"}} {
		if got := off.mustFail(t, args...); got != "mxgate: TLS reporting is off (Controller.EnableTLSRPT=false)\n" {
			t.Errorf("%v while off: %q", args, got)
		}
	}
	if out := off.mustRun(t, "tlsrpt", "lookup", "example.org"); !strings.Contains(out, "valid   yes") {
		t.Errorf("lookup while off:\n%s", out)
	}
}
