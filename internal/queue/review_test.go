package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// An administrator's Bounce or Delete while a delivery attempt of the message is in flight refuses with
// ErrInFlight and changes nothing: the attempt's 250 is then recorded as delivered and no DSN tells the
// sender it failed. Once the attempt is recorded, a bounce of what is left works.
func TestBounceAndDeleteRefuseWhileDeliveryInFlight(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	gate := make(chan struct{})
	e.fake.setGate(gate)
	e.fake.started = make(chan Batch, 1)
	done := make(chan error, 1)
	go func() { _, err := e.q.RunOnce(ctx); done <- err }()
	waitFor(t, e.fake.started, "the delivery to start")

	if err := e.q.Bounce(ctx, id); !errors.Is(err, ErrInFlight) {
		t.Errorf("Bounce while in flight = %v, want ErrInFlight", err)
	}
	if err := e.q.Delete(ctx, id); !errors.Is(err, ErrInFlight) {
		t.Errorf("Delete while in flight = %v, want ErrInFlight", err)
	}
	res, err := e.q.Bulk(ctx, ActionBounce, Selection{All: true})
	if err != nil || res.InFlight != 1 || len(res.IDs) != 0 {
		t.Errorf("bulk bounce while in flight = %+v, %v; want the message counted in flight, none bounced", res, err)
	}
	close(gate)
	if err := waitFor(t, done, "the delivery to be recorded"); err != nil {
		t.Fatal(err)
	}
	e.fake.setGate(nil)
	e.fake.started = nil
	if _, err := e.q.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("message after its 250 was recorded: %v, want finished (ErrNotFound)", err)
	}
	e.clock.Advance(time.Hour)
	e.runOnce(t)
	if n := len(e.fake.dsns()); n != 0 {
		t.Errorf("%d DSNs sent for a delivered message, want none", n)
	}
}

// Once the attempt is recorded (deferred), the administrator's bounce goes through.
func TestBounceAfterDeferredAttemptRecorded(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.fake.script = failWith(451, "4.7.0", "try later")
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	e.runOnce(t)
	if err := e.q.Bounce(ctx, id); err != nil {
		t.Fatalf("Bounce after the attempt was recorded: %v", err)
	}
	e.runOnce(t)
	if n := len(e.fake.dsns()); n != 1 {
		t.Errorf("%d DSNs after the bounce, want 1", n)
	}
}
