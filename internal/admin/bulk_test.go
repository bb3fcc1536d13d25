package admin_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
)

func (h *harness) client() *admin.Client {
	return &admin.Client{BaseURL: h.srv.URL, Token: testToken, HTTP: h.srv.Client()}
}

func TestQueueBulkDryRunChangesNothing(t *testing.T) {
	h := newHarness(t, nil)
	got, err := h.client().QueueBulk(context.Background(), admin.BulkRequest{Action: "delete", All: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := admin.BulkResult{Action: "delete", DryRun: true, Matched: 2, Affected: 2, Recipients: 2, Destructive: true,
		IDs: []string{admintest.MsgQueued, admintest.MsgHeld}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dry run (-want +got):\n%s", diff)
	}
	if c := h.queue.Calls(); len(c) != 0 {
		t.Errorf("a dry run changed the queue: %v", c)
	}
}

func TestQueueBulkRetryAll(t *testing.T) {
	h := newHarness(t, nil)
	got, err := h.client().QueueBulk(context.Background(), admin.BulkRequest{Action: "retry", All: true})
	if err != nil {
		t.Fatal(err)
	}
	// The held message is not retried: it waits for release.
	if got.Affected != 1 || got.Matched != 2 || got.DryRun {
		t.Errorf("result %+v, want 1 of 2 affected", got)
	}
	if diff := cmp.Diff([]string{"retry " + admintest.MsgQueued}, h.queue.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestQueueBulkFilters(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		req  admin.BulkRequest
		want []string
	}{
		{admin.BulkRequest{Action: "hold", Domain: "EXAMPLE.org"}, []string{admintest.MsgQueued}},
		{admin.BulkRequest{Action: "bounce", ResultType: "certificate-host-mismatch"}, []string{admintest.MsgQueued}},
		{admin.BulkRequest{Action: "release", Held: true}, []string{admintest.MsgHeld}},
		{admin.BulkRequest{Action: "delete", OlderThan: "90m"}, []string{admintest.MsgQueued}},
		{admin.BulkRequest{Action: "delete", OlderThan: "1d"}, []string{}},
	}
	for _, tt := range tests {
		tt.req.DryRun = true
		got, err := h.client().QueueBulk(context.Background(), tt.req)
		if err != nil {
			t.Errorf("%+v: %v", tt.req, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got.IDs); diff != "" {
			t.Errorf("%+v: ids (-want +got):\n%s", tt.req, diff)
		}
	}
}

// TestQueueBulkDestructiveNeedsConfirm: delete and bounce run only with the confirmed count, and not when
// more messages match than were confirmed.
func TestQueueBulkDestructiveNeedsConfirm(t *testing.T) {
	h := newHarness(t, nil)
	c := h.client()
	ctx := context.Background()
	var ae *admin.APIError
	_, err := c.QueueBulk(ctx, admin.BulkRequest{Action: "bounce", All: true})
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "confirm") {
		t.Fatalf("unconfirmed bounce: %v, want 409 asking for confirm", err)
	}
	_, err = c.QueueBulk(ctx, admin.BulkRequest{Action: "delete", All: true, Confirm: 1})
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "2 messages would be affected, 1 were confirmed") {
		t.Fatalf("delete confirmed for fewer: %v, want 409", err)
	}
	if calls := h.queue.Calls(); len(calls) != 0 {
		t.Fatalf("refused actions changed the queue: %v", calls)
	}
	got, err := c.QueueBulk(ctx, admin.BulkRequest{Action: "delete", All: true, Confirm: 2})
	if err != nil || got.Affected != 2 {
		t.Fatalf("confirmed delete: %+v, %v", got, err)
	}
	if n := len(h.queue.Calls()); n != 2 {
		t.Errorf("%d calls, want 2 deletes", n)
	}
}

func TestQueueBulkBadRequests(t *testing.T) {
	h := newHarness(t, nil)
	for _, tt := range []struct {
		req  admin.BulkRequest
		want string
	}{
		{admin.BulkRequest{Action: "purge", All: true}, `unknown action "purge"`},
		{admin.BulkRequest{Action: "retry"}, "give all, or at least one filter"},
		{admin.BulkRequest{Action: "retry", All: true, Domain: "example.org"}, "cannot be combined"},
		{admin.BulkRequest{Action: "retry", Domain: "bad domain"}, "domain"},
		{admin.BulkRequest{Action: "retry", OlderThan: "yesterday"}, `older_than: invalid age "yesterday"`},
		{admin.BulkRequest{Action: "retry", OlderThan: "-2h"}, "must be positive"},
		{admin.BulkRequest{Action: "retry", ResultType: "Cert Expired"}, "result_type"},
	} {
		_, err := h.client().QueueBulk(context.Background(), tt.req)
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, tt.want) {
			t.Errorf("%+v: %v, want 400 mentioning %q", tt.req, err, tt.want)
		}
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"36h": 36 * time.Hour, "2d": 48 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := admin.ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0d", "-1d", "2 days", "d"} {
		if _, err := admin.ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) succeeded", in)
		}
	}
}

func TestQueueBulkNeedsToken(t *testing.T) {
	h := newHarness(t, nil)
	if code, _, _ := h.do(t, "POST", "/api/v1/queue/bulk", ""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", code)
	}
	if code, _, _ := h.do(t, "POST", "/api/v1/queue/bulk", "Bearer wrong-token-0123456789"); code != http.StatusUnauthorized {
		t.Fatalf("with a wrong token: %d, want 401", code)
	}
}
