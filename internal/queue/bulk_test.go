package queue

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// bulkFixture queues four messages, all deferred once:
//
//	old  (2 days old) to a@cert.example: certificate-expired
//	mid  (1 day old)  to b@cert.example and c@other.example: certificate-expired for both
//	new  (now)        to d@other.example: plain deferral; then held
//	done (now)        to e@done.example: delivered, so no longer in the queue
func bulkFixture(t *testing.T) (*env, map[string]string) {
	t.Helper()
	e := newEnv(t, nil)
	ids := map[string]string{}
	ids["old"] = e.submit(t, "s@sender.test", "a@cert.example")
	e.clock.Advance(24 * time.Hour)
	ids["mid"] = e.submit(t, "s@sender.test", "b@cert.example", "c@other.example")
	e.clock.Advance(24 * time.Hour)
	ids["new"] = e.submit(t, "s@sender.test", "d@other.example")
	ids["done"] = e.submit(t, "s@sender.test", "e@done.example")
	e.fake.script = func(j Job, r Recipient) Result {
		switch {
		case r.Addr.String() == "e@done.example":
			return Result{Outcome: Delivered, Code: 250}
		case j.MsgID == ids["new"]:
			return Result{Outcome: Deferred, Code: 451, Enhanced: "4.4.1", Text: "connection refused"}
		}
		return Result{Outcome: Deferred, Code: 451, Enhanced: "4.7.5", ResultType: "certificate-expired", Text: "certificate-expired"}
	}
	for e.runOnce(t) > 0 {
	}
	if err := e.q.Hold(context.Background(), ids["new"]); err != nil {
		t.Fatal(err)
	}
	return e, ids
}

func TestBulkSelection(t *testing.T) {
	e, ids := bulkFixture(t)
	tests := []struct {
		name   string
		action Action
		sel    Selection
		want   []string
		matchd int
		rcpts  int
	}{
		{"all retry skips held", ActionRetry, Selection{All: true}, []string{"old", "mid"}, 3, 3},
		{"all delete", ActionDelete, Selection{All: true}, []string{"old", "mid", "new"}, 3, 4},
		{"domain", ActionBounce, Selection{Domain: "OTHER.example."}, []string{"mid", "new"}, 2, 3},
		{"result type", ActionHold, Selection{ResultType: "certificate-expired"}, []string{"old", "mid"}, 2, 3},
		{"held", ActionRelease, Selection{Held: true}, []string{"new"}, 1, 1},
		{"hold skips held", ActionHold, Selection{Domain: "other.example"}, []string{"mid"}, 2, 2},
		{"older than", ActionRetry, Selection{OlderThan: 36 * time.Hour}, []string{"old"}, 1, 1},
		{"filters combine", ActionBounce, Selection{Domain: "cert.example", OlderThan: 12 * time.Hour}, []string{"old", "mid"}, 2, 3},
		{"nothing", ActionDelete, Selection{Domain: "done.example"}, nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.q.PreviewBulk(context.Background(), tt.action, tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, k := range tt.want {
				want = append(want, ids[k])
			}
			if diff := cmp.Diff(want, got.IDs); diff != "" {
				t.Errorf("IDs (-want +got):\n%s", diff)
			}
			if got.Matched != tt.matchd || got.Affected != len(tt.want) || got.Recipients != tt.rcpts {
				t.Errorf("matched %d affected %d recipients %d, want %d %d %d", got.Matched, got.Affected, got.Recipients,
					tt.matchd, len(tt.want), tt.rcpts)
			}
		})
	}
}

func TestBulkSelectionErrors(t *testing.T) {
	e := newEnv(t, nil)
	for _, s := range []Selection{{}, {All: true, Domain: "x.example"}, {OlderThan: -time.Hour}, {All: true, Max: -1}} {
		if _, err := e.q.Bulk(context.Background(), ActionDelete, s); !errors.Is(err, ErrBadSelection) {
			t.Errorf("Bulk(%+v) = %v, want ErrBadSelection", s, err)
		}
	}
	if _, err := e.q.PreviewBulk(context.Background(), "purge", Selection{All: true}); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("unknown action: %v, want ErrUnknownAction", err)
	}
}

// TestActionRetryAllMakesDue: retry --all makes every queued recipient of unheld messages due at once, like
// postqueue -f; held messages stay held and not due.
func TestActionRetryAllMakesDue(t *testing.T) {
	e, ids := bulkFixture(t)
	before := len(e.fake.Deliveries())
	res, err := e.q.Bulk(context.Background(), ActionRetry, Selection{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Affected != 2 {
		t.Fatalf("affected %d, want 2", res.Affected)
	}
	e.runOnce(t) // same clock: only what retry made due is attempted
	var again []string
	for _, d := range e.fake.Deliveries()[before:] {
		again = append(again, d.Job.MsgID)
	}
	slices.Sort(again)
	want := []string{ids["old"], ids["mid"]}
	slices.Sort(want)
	if diff := cmp.Diff(want, slices.Compact(again)); diff != "" {
		t.Errorf("attempted after retry --all (-want +got):\n%s", diff)
	}
}

// TestActionBounceSendsDSNsAndDeleteRemoves: bounce fails the selected messages with DSNs; delete removes them
// without; both leave the others alone.
func TestActionBounceSendsDSNsAndDeleteRemoves(t *testing.T) {
	e, ids := bulkFixture(t)
	ctx := context.Background()
	res, err := e.q.Bulk(ctx, ActionBounce, Selection{ResultType: "certificate-expired", OlderThan: 36 * time.Hour})
	if err != nil || res.Affected != 1 || res.IDs[0] != ids["old"] {
		t.Fatalf("bounce: %+v, %v; want the old message only", res, err)
	}
	if _, err := e.q.Get(ctx, ids["old"]); !errors.Is(err, ErrNotFound) {
		t.Errorf("bounced message still queued: %v", err)
	}
	for e.runOnce(t) > 0 {
	}
	if n := len(e.fake.dsns()); n != 1 {
		t.Errorf("%d DSNs after the bounce, want 1", n)
	}
	res, err = e.q.Bulk(ctx, ActionDelete, Selection{Held: true})
	if err != nil || res.Affected != 1 || res.IDs[0] != ids["new"] {
		t.Fatalf("delete: %+v, %v; want the held message only", res, err)
	}
	if _, err := e.q.Get(ctx, ids["new"]); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted message still queued: %v", err)
	}
	if _, err := e.q.Get(ctx, ids["mid"]); err != nil {
		t.Errorf("an unselected message is gone: %v", err)
	}
}

// TestBulkMaxRefusesGrownSelection: a destructive action confirmed for N messages changes nothing when more
// match by the time it runs.
func TestBulkMaxRefusesGrownSelection(t *testing.T) {
	e, ids := bulkFixture(t)
	ctx := context.Background()
	p, err := e.q.PreviewBulk(ctx, ActionDelete, Selection{Domain: "cert.example"})
	if err != nil || p.Affected != 2 {
		t.Fatalf("preview: %+v, %v", p, err)
	}
	e.submit(t, "s@sender.test", "z@cert.example")
	_, err = e.q.Bulk(ctx, ActionDelete, Selection{Domain: "cert.example", Max: p.Affected})
	if !errors.Is(err, ErrSelectionGrew) {
		t.Fatalf("err = %v, want ErrSelectionGrew", err)
	}
	for _, k := range []string{"old", "mid"} {
		if _, err := e.q.Get(ctx, ids[k]); err != nil {
			t.Errorf("%s deleted although the action was refused: %v", k, err)
		}
	}
}
