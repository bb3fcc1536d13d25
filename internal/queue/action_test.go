package queue

import (
	"context"
	"errors"
	"testing"
)

// TestActionPreviewMatchesDo checks Preview against what the action then does to a real queue: the
// recipients it changes, or none when Preview says it is skipped.
func TestActionPreviewMatchesDo(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		action    Action
		held      bool
		wantRcpts int
		wantSkip  bool
	}{
		{ActionRetry, false, 2, false},
		{ActionRetry, true, 2, true},
		{ActionHold, false, 2, false},
		{ActionHold, true, 2, true},
		{ActionRelease, true, 2, false},
		{ActionRelease, false, 2, true},
		{ActionBounce, false, 2, false},
		{ActionBounce, true, 2, false},
		{ActionDelete, false, 2, false},
	} {
		name := string(tc.action)
		if tc.held {
			name += "/held"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.fake.script = failWith(451, "4.2.1", "busy")
			id := e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.org")
			e.runOnce(t) // both recipients deferred, due later
			if tc.held {
				if err := e.q.Hold(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			before, err := e.q.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			eff := tc.action.Preview(before.MessageInfo)
			if eff.Rcpts != tc.wantRcpts || (eff.Skip != "") != tc.wantSkip {
				t.Fatalf("Preview = %+v, want %d recipients, skipped %v", eff, tc.wantRcpts, tc.wantSkip)
			}
			if err := tc.action.Do(ctx, e.q, id); err != nil {
				t.Fatalf("Do: %v", err)
			}
			changed := 0
			switch tc.action {
			case ActionRetry:
				// What retry changes shows in the next run: the recipients attempted now.
				n0 := len(e.fake.Deliveries())
				e.runOnce(t)
				for _, d := range e.fake.Deliveries()[n0:] {
					if d.Job.MsgID == id {
						changed += len(d.Job.Recipients)
					}
				}
			case ActionHold, ActionRelease:
				after, err := e.q.Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if after.Held != before.Held {
					changed = after.Queued
				}
			case ActionBounce, ActionDelete:
				after, err := e.q.Get(ctx, id)
				switch {
				case errors.Is(err, ErrNotFound):
					changed = before.Queued + before.Quarantined
				case err != nil:
					t.Fatal(err)
				default:
					changed = before.Queued + before.Quarantined - after.Queued - after.Quarantined
				}
			}
			want := eff.Rcpts
			if eff.Skip != "" {
				want = 0
			}
			if changed != want {
				t.Errorf("%s changed %d recipients; Preview said %+v", tc.action, changed, eff)
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range Actions() {
		got, err := ParseAction(string(a))
		if err != nil || got != a {
			t.Errorf("ParseAction(%q) = %q, %v", a, got, err)
		}
		if a.Verb() == "" || a.Explain() == "" {
			t.Errorf("%q has no verb or explanation", a)
		}
	}
	if _, err := ParseAction("purge"); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("ParseAction(purge) = %v, want ErrUnknownAction", err)
	}
	if err := Action("purge").Do(context.Background(), nil, "x"); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("Do(purge) = %v, want ErrUnknownAction", err)
	}
}
