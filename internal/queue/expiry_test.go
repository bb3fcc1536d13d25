package queue

import (
	"context"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/dsn"
)

// TestLoopBouncesWith546AtExpiry: mail that loops back to us is deferred (4.4.6) until it expires and is then
// bounced with 5.4.6, not the generic 5.4.7.
func TestLoopBouncesWith546AtExpiry(t *testing.T) {
	const life = 2 * time.Hour
	e := newEnv(t, func(o *Options) { o.MaxLifetime = life })
	e.fake.script = func(j Job, r Recipient) Result {
		return Result{Outcome: Deferred, Code: 451, Enhanced: "4.4.6", Text: "mail for example.com loops back to myself"}
	}
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	for i := 0; i < 100 && len(e.fake.dsns()) == 0; i++ {
		e.runOnce(t)
		if len(e.fake.dsns()) > 0 {
			break
		}
		d, err := e.q.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("message gone before expiry: %v", err)
		}
		if d.Rcpts[0].LastEnhanced != "4.4.6" && i > 0 {
			t.Fatalf("recipient last status %q, want the loop deferral 4.4.6", d.Rcpts[0].LastEnhanced)
		}
		e.clock.Set(d.Rcpts[0].NextAttempt)
	}
	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	rep, err := dsn.Parse([]byte(dsns[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Recipients[0]; r.Action != dsn.ActionFailed || r.Status != "5.4.6" {
		t.Errorf("recipient %+v, want failed 5.4.6", r)
	}
}
