package console_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/console/consoletest"
)

// TestQueueBulkReviewThenConfirm: the queue page offers an action on every matching message; the review page
// shows what the queue says it would do and changes nothing; confirming a smaller count than now matches does
// nothing; confirming the count does it.
func TestQueueBulkReviewThenConfirm(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	mustContain(t, b.get("/queue"), `action="/queue/bulk"`, `name="older_than"`, `name="result_type"`)

	p := b.get("/queue/bulk?action=delete&older_than=90m")
	if p.code != http.StatusOK {
		t.Fatalf("review: %d\n%s", p.code, p.body)
	}
	mustContain(t, p, "Delete 2 messages, affecting 2 recipients", "received more than 90m ago",
		admintest.MsgQueued, consoletest.MsgExpired, `name="confirm" value="2"`)
	if c := env.Queue.Calls(); len(c) != 0 {
		t.Fatalf("the review changed the queue: %v", c)
	}

	form := url.Values{"action": {"delete"}, "older_than": {"90m"}, "confirm": {"1"}}
	if p := b.post("/queue/bulk", form); p.code != http.StatusConflict {
		t.Fatalf("confirmed fewer than match: %d, want 409\n%s", p.code, p.body)
	} else {
		mustContain(t, p, "Nothing was done")
	}
	if c := env.Queue.Calls(); len(c) != 0 {
		t.Fatalf("a refused action changed the queue: %v", c)
	}

	form.Set("confirm", "2")
	p = b.post("/queue/bulk", form)
	if p.code != http.StatusSeeOther || p.location != "/queue" {
		t.Fatalf("confirmed: %d → %q", p.code, p.location)
	}
	mustContain(t, b.get("/queue"), "Delete: done for 2 message(s), 2 recipient(s)")
	want := []string{"delete " + admintest.MsgQueued, "delete " + consoletest.MsgExpired}
	if diff := cmp.Diff(want, env.Queue.Calls()); diff != "" {
		t.Errorf("queue calls (-want +got):\n%s", diff)
	}
}

func TestQueueBulkRetryAllAndErrors(t *testing.T) {
	t.Parallel()
	env, b := loggedIn(t)
	mustContain(t, b.get("/queue/bulk?action=retry&all=true"), "Retry 2 messages, affecting 2 recipients", "every message in the queue")
	if p := b.post("/queue/bulk", url.Values{"action": {"retry"}, "all": {"true"}, "confirm": {"2"}}); p.code != http.StatusSeeOther {
		t.Fatalf("retry all: %d", p.code)
	}
	if n := len(env.Queue.Calls()); n != 2 {
		t.Errorf("retry all: %d calls, want 2 (the held message waits)", n)
	}
	for path, want := range map[string]string{
		"/queue/bulk?action=retry":                            "give all, or at least one filter",
		"/queue/bulk?action=purge&all=true":                   "unknown action",
		"/queue/bulk?action=hold&older_than=soon":             "invalid age",
		"/queue/bulk?action=hold&all=true&domain=example.org": "cannot be combined",
	} {
		p := b.get(path)
		if p.code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", path, p.code)
		}
		mustContain(t, p, want)
	}
	if p := b.post("/queue/bulk", url.Values{"action": {"delete"}, "all": {"true"}}); p.code != http.StatusBadRequest {
		t.Errorf("no confirmed count: %d, want 400", p.code)
	}
	if p := b.post("/queue/bulk", url.Values{"action": {"delete"}, "all": {"true"}, "confirm": {"3"}, "csrf": {""}}); p.code == http.StatusSeeOther {
		t.Errorf("a POST without the CSRF token was accepted")
	}
	if n := len(env.Queue.Calls()); n != 2 {
		t.Errorf("refused requests changed the queue: %v", env.Queue.Calls())
	}
}
