package queue

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestArchiveFindsFinishedMessages: a message that left the queue (one recipient delivered, one bounced)
// is found by queue ID, Message-ID, sender and recipient, with each recipient's final state and every
// attempt, after a restart too, until the retention passes.
func TestArchiveFindsFinishedMessages(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.script = func(j Job, r Recipient) Result {
		if strings.HasPrefix(r.Addr.String(), "bad@") {
			return Result{Outcome: Failed, Code: 550, Enhanced: "5.1.1", Text: "no such user", RemoteMTA: "mx.b.example"}
		}
		return Result{Outcome: Delivered, Code: 250, Enhanced: "2.0.0", Text: "ok", RemoteMTA: "mx.a.example", TLS: "verified TLS 1.3"}
	}
	// The domain is stored in its canonical form, the local part as given.
	id := e.submit(t, "Sender@Example.org", "ok@a.example", "bad@b.example")
	e.runOnce(t)
	e.runOnce(t) // the bounce

	var mid string
	for _, d := range e.fake.Deliveries() {
		if d.Job.MsgID == id {
			for line := range strings.SplitSeq(d.Body, "\r\n") {
				if v, ok := strings.CutPrefix(line, "Message-ID: "); ok {
					mid = v
				}
			}
		}
	}
	if mid == "" {
		t.Fatal("the submitted message has no Message-ID")
	}
	if _, err := e.q.Get(context.Background(), id); err == nil {
		t.Fatalf("message %s is still in the queue", id)
	}

	check := func(t *testing.T, q *Queue) {
		t.Helper()
		for _, tq := range []TraceQuery{{ID: id}, {MessageID: mid}, {MessageID: strings.Trim(mid, "<>")}, {Sender: "sender@example.org"},
			{Recipient: "bad@b.example"}, {Any: id}, {Any: mid}, {Any: "ok@a.example"}} {
			got, err := q.Trace(context.Background(), tq)
			if err != nil {
				t.Fatalf("%+v: %v", tq, err)
			}
			if len(got) != 1 || got[0].ID != id {
				t.Errorf("%+v: got %d messages, want %s", tq, len(got), id)
				continue
			}
			m := got[0]
			if m.MessageID != mid || m.From != "Sender@example.org" || m.DSN || len(m.Recipients) != 2 || len(m.Attempts) != 2 {
				t.Errorf("%+v: %+v", tq, m)
			}
			states := map[string]string{}
			for _, r := range m.Recipients {
				states[r.Addr] = r.State
			}
			if states["ok@a.example"] != "delivered" || states["bad@b.example"] != "failed" {
				t.Errorf("recipient states %v", states)
			}
		}
		// The bounce it caused is archived too, as a DSN, found by its recipient.
		dsns, err := q.Trace(context.Background(), TraceQuery{Recipient: "sender@example.org"})
		if err != nil || len(dsns) != 1 || !dsns[0].DSN || dsns[0].From != "" {
			t.Errorf("bounce in the archive: %+v, %v", dsns, err)
		}
		// An address matches as sender and as recipient: the message and its bounce, newest first.
		if got, err := q.Trace(context.Background(), TraceQuery{Any: "Sender@Example.org"}); err != nil || len(got) != 2 {
			t.Errorf("any by sender address: %d messages, %v; want 2", len(got), err)
		}
		if got, err := q.Trace(context.Background(), TraceQuery{Any: "nobody@example.org"}); err != nil || len(got) != 0 {
			t.Errorf("unknown address: %+v, %v", got, err)
		}
	}
	check(t, e.q)

	// After a restart.
	e.q.Close()
	e.open(t)
	check(t, e.q)

	// The history the dashboard is rebuilt from: both arrivals (the bounce is not an arrival) and the three
	// attempts (two recipients, then the bounce's).
	h, err := e.q.HistorySince(context.Background(), t0)
	if err != nil || len(h.Accepted) != 1 || len(h.Attempts) != 3 {
		t.Errorf("history: %d accepted, %d attempts, %v; want 1 and 3", len(h.Accepted), len(h.Attempts), err)
	}

	if _, err := e.q.Trace(context.Background(), TraceQuery{}); err != ErrBadQuery {
		t.Errorf("empty query: %v, want ErrBadQuery", err)
	}

	// The retention passes: the next delivery prunes.
	e.clock.Advance(DefaultArchiveRetention + 2*time.Hour)
	e.submit(t, "other@example.org", "ok@a.example")
	e.runOnce(t)
	if got, err := e.q.Trace(context.Background(), TraceQuery{ID: id}); err != nil || len(got) != 0 {
		t.Errorf("after the retention: %d messages, %v; want none", len(got), err)
	}
	if got, err := e.q.Trace(context.Background(), TraceQuery{Sender: "other@example.org"}); err != nil || len(got) != 1 {
		t.Errorf("the newer message: %d, %v; want 1", len(got), err)
	}
}

// TestTrackingOutbox: each finished message is recorded in the tracking outbox with its details; the
// backlog counts what is left after a hand-over, with when the oldest finished; a queue opened without an
// outbox (the node left cluster mode) drops what its outbox held, since nothing would hand it over.
func TestTrackingOutbox(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TrackingOutbox = true })
	ctx := context.Background()
	for _, from := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		e.submit(t, from, "ok@a.example")
	}
	e.runOnce(t)
	out, err := e.q.Outbox(ctx, 10)
	if err != nil || len(out) != 3 || len(out[0].Recipients) != 1 || out[0].Finished.IsZero() {
		t.Fatalf("outbox: %+v, %v; want the three messages with their recipient", out, err)
	}
	if err := e.q.DoneOutbox(ctx, out[0].Seq); err != nil {
		t.Fatal(err)
	}
	if n, oldest, err := e.q.OutboxBacklog(ctx); err != nil || n != 2 || !oldest.Equal(out[1].Finished) {
		t.Errorf("backlog after a hand-over: %d, oldest %v, %v; want 2, %v", n, oldest, err, out[1].Finished)
	}
	e.q.Close()
	e.opts.TrackingOutbox = false
	e.open(t)
	if n, _, err := e.q.OutboxBacklog(ctx); err != nil || n != 0 {
		t.Errorf("backlog once the outbox is off: %d, %v; want 0", n, err)
	}
	if got, err := e.q.Trace(ctx, TraceQuery{Sender: "c@example.org"}); err != nil || len(got) != 1 {
		t.Errorf("archive after dropping the outbox: %d, %v; want the message", len(got), err)
	}
}
