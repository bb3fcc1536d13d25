package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// A DSN attaches the original only after its octets match the checksum taken at acceptance: a body file
// that holds other octets is never returned to this sender. The DSN is still sent, without the original.
func TestDSNWithoutOriginalWhenBodyFailsChecksum(t *testing.T) {
	for _, ret := range []string{"FULL", "HDRS"} {
		t.Run(ret, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := context.Background()
			id := e.submitEnv(t, Envelope{From: "alice@sender.test", Ret: ret, Recipients: []Recipient{{Addr: "bob@example.com"}}})
			secret := "From: someone-else@other.test\r\nSubject: not yours\r\n\r\nSECRET of another message.\r\n"
			if err := os.WriteFile(filepath.Join(e.opts.Dir, id), []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := e.q.Bounce(ctx, id); err != nil {
				t.Fatal(err)
			}
			e.runOnce(t)
			dsns := e.fake.dsns()
			if len(dsns) != 1 {
				t.Fatalf("%d DSNs, want 1", len(dsns))
			}
			body := dsns[0].Body
			if strings.Contains(body, "SECRET") || strings.Contains(body, "someone-else") {
				t.Errorf("DSN carries the octets of the corrupt body:\n%s", body)
			}
			if !strings.Contains(body, "bob@example.com") {
				t.Errorf("DSN does not name the failed recipient:\n%s", body)
			}
		})
	}
}
