package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/queue"
)

const cliToken = "fedcba9876543210fedcba9876543210"

type adminHarness struct {
	srv   *httptest.Server
	queue *admintest.Queue
	sts   *admintest.STSCache
}

func newAdminHarness(t *testing.T, token string) *adminHarness {
	t.Helper()
	q, c := admintest.Fixture()
	s, err := admin.New(admin.Options{
		Token: token,
		Queue: q,
		STS:   c,
		Explain: func(ctx context.Context, req delivery.PlanRequest) (delivery.Explanation, error) {
			e := delivery.Explanation{Domain: req.Domain.String(), RequireTLS: req.RequireTLS, Level: "required-verify", Plan: "mta-sts enforce",
				Reason: "MTA-STS policy id 2025a in enforce mode", STSMode: "enforce",
				MX: []delivery.MXCheck{{Host: "mx1.example.org", Pref: 10, Allowed: true}}}
			return e, nil
		},
		Status: func(ctx context.Context) (admin.Status, error) {
			return admin.Status{Node: "n1", Generation: admin.StatusGeneration{Committed: 3, Running: 3}, Queue: queue.Summary{Messages: 2}}, nil
		},
		Now: admintest.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &adminHarness{srv: srv, queue: q, sts: c}
}

// run runs the command line against the harness with --admin and --token.
func (h *adminHarness) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(append([]string{"--admin", h.srv.URL, "--token", cliToken}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAdminVerbsText(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	tests := []struct {
		args []string
		want []string // substrings of stdout
	}{
		{[]string{"queue", "summary"}, []string{
			"messages       2\n", "oldest queued  2025-06-01T08:00:00Z (2h0m0s ago)\n",
			"\nSTATE      RECIPIENTS\ndelivered  1\nqueued     2\n",
			"\nDOMAIN       QUEUED\nexample.net  1\nexample.org  1\n"}},
		{[]string{"queue", "show", admintest.MsgQueued}, []string{
			"from          alice@corp.example\n", "size          2048 bytes\n", "envid         env-1\n",
			"RECIPIENT        STATE   ATTEMPTS  NEXT ATTEMPT          LAST RESULT\n",
			"bob@example.org  queued  2         2025-06-01T10:10:00Z  certificate-host-mismatch: mx1.example.org",
			"2025-06-01T08:10:00Z  bob@example.org  deferred  mx1.example.org  -    sts",
		}},
		{[]string{"queue", "show", admintest.MsgHeld}, []string{"state         held\n",
			"erin@example.com  delivered  1         -             250 2.0.0 OK\n"}},
		{[]string{"queue", "retry", admintest.MsgQueued}, []string{"retry scheduled: the queued recipients of message " + admintest.MsgQueued + " are due now\n"}},
		{[]string{"queue", "hold", admintest.MsgQueued}, []string{"held message " + admintest.MsgQueued + "\n"}},
		{[]string{"queue", "release", admintest.MsgQueued}, []string{"released message " + admintest.MsgQueued + "\n"}},
		{[]string{"queue", "bounce", admintest.MsgQueued}, []string{"bounced message " + admintest.MsgQueued + ": its remaining recipients failed"}},
		{[]string{"queue", "delete", admintest.MsgHeld}, []string{"deleted message " + admintest.MsgHeld + " (no DSN sent)\n"}},
		{[]string{"queue", "list", "--held"}, []string{"no messages\n"}}, // the held message was just deleted
		{[]string{"sts", "cache", "show", "example.org"}, []string{"mode           enforce\n", "state          valid\n",
			"max age        7d\n", "mx             mx1.example.org, *.mx.example.org\n", "last used      2025-06-01T09:10:00Z\n",
			"\npolicy:\n  version: STSv1\n  mode: enforce\n"}},
		{[]string{"sts", "cache", "refresh", "example.com"}, []string{"refreshed the MTA-STS policy of example.com\n\n",
			"fetched        2025-06-01T10:00:00Z\n", "max age        1d\n"}},
		{[]string{"sts", "cache", "flush", "example.net"}, []string{"flushed the cached MTA-STS policy of example.net"}},
		{[]string{"policy", "explain", "example.org"}, []string{
			"domain    example.org\nplan      mta-sts enforce (source , level required-verify)\n",
			"why       MTA-STS policy id 2025a in enforce mode\n",
			"HOST             PREF  ALLOWED  DANE  FAILURE\nmx1.example.org  10    yes      -     -\n"}},
		{[]string{"policy", "explain", "--requiretls", "[192.0.2.1]"}, []string{
			"domain      [192.0.2.1]\nrequiretls  yes"}},
		{[]string{"status"}, []string{"node                           n1\n", "settings_generation.committed  3\n",
			"queue.messages                 2\n"}},
	}
	for _, tt := range tests {
		code, out, errOut := h.run(t, tt.args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, errOut)
			continue
		}
		for _, want := range tt.want {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output\n%s\ndoes not contain\n%s", tt.args, out, want)
			}
		}
	}
	want := []string{"retry " + admintest.MsgQueued, "hold " + admintest.MsgQueued, "release " + admintest.MsgQueued,
		"bounce " + admintest.MsgQueued, "delete " + admintest.MsgHeld}
	if diff := cmp.Diff(want, h.queue.Calls()); diff != "" {
		t.Errorf("queue calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"refresh example.com", "flush example.net"}, h.sts.Calls()); diff != "" {
		t.Errorf("sts calls (-want +got):\n%s", diff)
	}
}

// The tables are aligned: exact output of the two lists.
func TestAdminListTables(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	_, out, _ := h.run(t, "queue", "list")
	want := `ID                          STATE   FROM                RECEIVED              RCPTS Q/D/F  ATTEMPTS  NEXT ATTEMPT          DOMAINS                  LAST ERROR
0a1b2c3d4e5f6g7h8i9j0k1l2m  queued  alice@corp.example  2025-06-01T08:00:00Z  1/0/0        2         2025-06-01T10:10:00Z  example.org              certificate-host-mismatch: mx1.example.org: x509: certifica…
0a1b2c3d4e5f6g7h8i9j0k1l2n  held    carol@corp.example  2025-06-01T09:00:00Z  1/1/0        1         -                     example.com,example.net  -
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("queue list (-want +got):\n%s", diff)
	}
	_, out, _ = h.run(t, "sts", "cache", "list")
	want = `DOMAIN       MODE     STATE    ID     MAX AGE  FETCHED               EXPIRES               FAILURES  LAST ERROR
example.net  testing  expired  old1   1h       2025-06-01T07:00:00Z  2025-06-01T08:00:00Z  3         sts-policy-fetch-error: GET https://mta-sts.example.net/.we…
example.org  enforce  valid    2025a  7d       2025-06-01T09:00:00Z  2025-06-08T09:00:00Z  0         -
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("sts cache list (-want +got):\n%s", diff)
	}
}

func TestAdminQueueListFilterFlags(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	code, out, errOut := h.run(t, "queue", "list", "--domain", "Example.ORG", "--sender", "alice@corp.example",
		"--state", "queued", "--limit", "3")
	if code != 0 || !strings.Contains(out, admintest.MsgQueued) || strings.Contains(out, admintest.MsgHeld) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	want := queue.Filter{Domain: "example.org", Sender: "alice@corp.example", State: "queued", Limit: 3}
	if diff := cmp.Diff(want, h.queue.LastFilter()); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
	h.run(t, "queue", "list", "--held")
	if diff := cmp.Diff(queue.Filter{HeldOnly: true}, h.queue.LastFilter()); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
}

func TestAdminVerbsJSON(t *testing.T) {
	h := newAdminHarness(t, cliToken)

	_, out, _ := h.run(t, "--json", "queue", "list")
	var msgs []admin.Message
	if err := json.Unmarshal([]byte(out), &msgs); err != nil || len(msgs) != 2 || msgs[1].State != "held" {
		t.Errorf("queue list --json: %v, %+v", err, msgs)
	}
	_, out, _ = h.run(t, "queue", "show", admintest.MsgQueued, "--json")
	var m admin.MessageDetail
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Recipients[0].LastResultType != "certificate-host-mismatch" {
		t.Errorf("queue show --json: %v, %+v", err, m)
	}
	_, out, _ = h.run(t, "--json", "sts", "cache", "show", "example.net")
	var e admin.STSEntry
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.Domain != "example.net" || !e.Expired || e.MaxAgeSeconds != 3600 {
		t.Errorf("sts cache show --json: %v, %+v", err, e)
	}
	_, out, _ = h.run(t, "--json", "queue", "hold", admintest.MsgQueued)
	var ar admin.ActionResult
	if err := json.Unmarshal([]byte(out), &ar); err != nil || ar != (admin.ActionResult{Action: "hold", ID: admintest.MsgQueued}) {
		t.Errorf("queue hold --json: %v, %+v (%s)", err, ar, out)
	}
	for _, args := range [][]string{{"status"}, {"policy", "explain", "example.org"}, {"queue", "summary"}, {"sts", "cache", "list"}} {
		code, out, _ := h.run(t, append([]string{"--json"}, args...)...)
		if code != 0 || !json.Valid([]byte(out)) || !strings.HasSuffix(out, "}\n") && !strings.HasSuffix(out, "]\n") {
			t.Errorf("%v --json: exit %d, output %q", args, code, out)
		}
	}
}

func TestAdminVerbErrors(t *testing.T) {
	h := newAdminHarness(t, cliToken)
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"queue", "show", "nope"}, "mxgate: queue: message not found: nope\n"},
		{[]string{"queue", "delete", "nope"}, "mxgate: queue: message not found: nope\n"},
		{[]string{"queue", "list", "--state", "deferred"}, `mxgate: invalid state parameter "deferred"`},
		{[]string{"sts", "cache", "show", "unknown.example"}, "mxgate: mtastscache: no cached policy for domain: unknown.example\n"},
		{[]string{"sts", "cache", "flush", "bad..domain"}, "mxgate: invalid domain"},
		{[]string{"queue", "retry"}, "mxgate: give a message ID, --all, or a filter (--domain, --result-type, --held, --older-than)\n"},
		{[]string{"--token", "wrong-token-wrong-token", "status"}, "mxgate: missing or invalid admin token\n"},
	}
	for _, tt := range tests {
		code, out, errOut := h.run(t, tt.args...)
		if code == 0 || !strings.HasPrefix(errOut, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tt.args, code, errOut, tt.wantErr)
		}
		if out != "" {
			t.Errorf("%v: printed %q on failure", tt.args, out)
		}
	}
	if calls := h.queue.Calls(); len(calls) != 0 {
		t.Errorf("failed verbs changed the queue: %v", calls)
	}
	// Nothing listening.
	var out, errb bytes.Buffer
	srvURL := h.srv.URL
	h.srv.Close()
	if code := Main([]string{"--admin", srvURL, "--token", cliToken, "status"}, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "cannot reach the admin API") {
		t.Errorf("closed server: exit %d, stderr %q", code, errb.String())
	}
}

// Without --admin and --token, the URL comes from admin.listen and the token from the data directory.
func TestAdminConnectionFromConfig(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	token, _, err := admin.LoadOrCreateToken(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	h := newAdminHarness(t, token)
	listen := strings.TrimPrefix(h.srv.URL, "http://")
	cfgPath := filepath.Join(dir, "mxgate.toml")
	cfg := "[data]\ndir = " + strconvQuote(dataDir) + "\n[admin]\nlisten = " + strconvQuote(listen) + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"--config", cfgPath, "status"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "n1") {
		t.Errorf("status from config: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}

	// An explicit --token wins over the file.
	out.Reset()
	errb.Reset()
	if code := Main([]string{"--config", cfgPath, "--token", cliToken, "status"}, &out, &errb); code == 0 {
		t.Errorf("--token did not override the token file")
	}

	// No token file: say how to fix it.
	if err := os.Remove(admin.TokenPath(dataDir)); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"--config", cfgPath, "status"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "pass --token") {
		t.Errorf("missing token file: exit %d, stderr %q", code, errb.String())
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s) // a JSON string is a valid TOML basic string for these paths
	return string(b)
}

func TestListenURL(t *testing.T) {
	tests := []struct{ listen, want string }{
		{"127.0.0.1:8025", "http://127.0.0.1:8025"},
		{":8025", "http://127.0.0.1:8025"},
		{"0.0.0.0:8025", "http://127.0.0.1:8025"},
		{"[::]:8025", "http://[::1]:8025"},
		{"[::1]:9000", "http://[::1]:9000"},
		{"localhost:8025", "http://localhost:8025"},
	}
	for _, tt := range tests {
		got, err := listenURL(tt.listen)
		if err != nil || got != tt.want {
			t.Errorf("listenURL(%q) = %q, %v; want %q", tt.listen, got, err, tt.want)
		}
	}
	if _, err := listenURL("no-port"); err == nil {
		t.Errorf("listenURL(no-port) succeeded")
	}
}

func TestClean(t *testing.T) {
	if got, want := clean("a\tb\nc\x1b[31md\u00e9"), "a b c\ufffd[31md\u00e9"; got != want {
		t.Errorf("clean = %q, want %q", got, want)
	}
}
