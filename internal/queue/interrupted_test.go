package queue

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/store"
)

// A delivery in flight when the gateway dies is due at once when it starts again, and the interrupted
// attempt counts for nothing (no attempt recorded, no backoff pushed), as Postfix retries at start.
func TestInterruptedDeliveryDueAtRestartWithoutCountingTheAttempt(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	first := e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com")
	e.fake.gate = make(chan struct{}) // the delivery never finishes: the process "dies" during it
	e.fake.started = make(chan Batch, 1)
	t.Cleanup(func() { close(e.fake.gate) })
	go e.q.RunOnce(ctx)
	waitFor(t, e.fake.started, "the delivery to start")

	// While it is in flight the index says so, and has counted nothing.
	if n := e.count(t, `SELECT COUNT(*) FROM queue_recipients WHERE msg_id = ? AND inflight = 1 AND attempts = 0`, first); n != 2 {
		t.Fatalf("%d recipients marked in flight with no attempt counted, want 2", n)
	}

	// Start again on the same database and spool, as after SIGKILL, an hour of fake time later.
	e.clock.Advance(time.Hour)
	db2, err := store.OpenSQLite(filepath.Join(filepath.Dir(e.opts.Dir), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	fake2 := newFake(e.clock)
	opts := e.opts
	opts.DB, opts.Deliverer = db2, fake2
	q2, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q2.Close() })
	d, err := q2.Get(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range d.Rcpts {
		if !r.NextAttempt.Equal(e.clock.Now()) || r.Attempts != 0 || r.State != stateQueued {
			t.Errorf("%s after restart: state %s, next attempt %v, %d attempts; want queued, due now (%v), 0 attempts",
				r.Addr, r.State, r.NextAttempt, r.Attempts, e.clock.Now())
		}
	}
	if d.Attempts != 0 {
		t.Errorf("message attempts = %d after an interrupted attempt, want 0", d.Attempts)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM queue_recipients WHERE inflight = 1`); n != 0 {
		t.Errorf("%d recipients still marked in flight after restart", n)
	}
	// Due now: delivered by the first dispatch, as attempt 1.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := q2.RunOnce(rctx); err != nil {
		t.Fatal(err)
	}
	got := fake2.Deliveries()
	if len(got) != 1 || got[0].Job.MsgID != first || got[0].Job.Attempt != 1 {
		t.Fatalf("deliveries after restart = %+v, want %s once as attempt 1", got, first)
	}
}

// A message whose attempts are cut short by crashes again and again waits for its backoff after
// maxInterrupted of them, so that a message that crashes the gateway cannot crash it on every start.
func TestRepeatedlyInterruptedDeliveryFallsBackToBackoff(t *testing.T) {
	e := newEnv(t, nil)
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	if _, err := e.opts.DB.Exec(`UPDATE queue_recipients SET inflight = 1, interrupted = ?, next_attempt = ?
		WHERE msg_id = ?`, maxInterrupted, ns(t0.Add(15*time.Minute)), id); err != nil {
		t.Fatal(err)
	}
	e.q.Close()
	e.open(t)
	d, err := e.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r := d.Rcpts[0]; !r.NextAttempt.Equal(t0.Add(15 * time.Minute)) {
		t.Errorf("next attempt after %d interruptions = %v, want the recorded retry time %v", maxInterrupted+1,
			r.NextAttempt, t0.Add(15*time.Minute))
	}
}

// settlingDeliverer reports the first job's results through Job.Settled and then waits on gate before
// returning: the rest of the batch is still in flight.
type settlingDeliverer struct {
	settled chan string // the settled message's id
	gate    chan struct{}
}

func (d settlingDeliverer) Deliver(ctx context.Context, b Batch) []Result {
	var out []Result
	for i, j := range b.Jobs {
		for _, r := range j.Recipients {
			res := Result{MsgID: j.MsgID, Rcpt: r.Addr, Outcome: Delivered, Code: 250}
			out = append(out, res)
			if i == 0 {
				j.Settled(res)
			}
		}
		if i == 0 {
			d.settled <- j.MsgID
			<-d.gate
		}
	}
	return out
}

// A message is recorded as soon as all its recipients are settled, while the rest of its batch is still
// being delivered: a crash then cannot deliver it again.
func TestMessageRecordedWhenSettledNotAtBatchEnd(t *testing.T) {
	d := settlingDeliverer{settled: make(chan string, 1), gate: make(chan struct{})}
	e := newEnv(t, func(o *Options) { o.Deliverer = d })
	ids := []string{e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com"),
		e.submit(t, "alice@sender.test", "dave@example.com")}
	ran := make(chan error, 1)
	gateOpen := false
	t.Cleanup(func() {
		if !gateOpen {
			close(d.gate)
		}
	})
	go func() { _, err := e.q.RunOnce(context.Background()); ran <- err }()
	first := waitFor(t, d.settled, "the first message to be settled")
	second := ids[0]
	if first == second {
		second = ids[1]
	}
	// Recording is asynchronous (group commit): wait for the first message's rows to go, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for e.count(t, `SELECT COUNT(*) FROM queue_messages WHERE id = ?`, first) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the settled message was not recorded while its batch was in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM queue_recipients WHERE msg_id = ? AND state = 'queued' AND inflight = 1`, second); n == 0 {
		t.Errorf("the message not settled yet has no recipient queued and in flight")
	}
	close(d.gate)
	gateOpen = true
	if err := waitFor(t, ran, "RunOnce"); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM queue_messages`); n != 0 {
		t.Errorf("%d messages left after the batch, want 0", n)
	}
}

// A delivery whose 250 reached the journal but not the index before the process died is recorded as
// delivered at the next start, not delivered again; a torn last line is ignored.
func TestJournalledDeliveryRecordedAtStart(t *testing.T) {
	e := newEnv(t, nil)
	id := e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com")
	var bob int64
	if err := e.opts.DB.QueryRow(`SELECT id FROM queue_recipients WHERE msg_id = ? AND rcpt = 'bob@example.com'`, id).Scan(&bob); err != nil {
		t.Fatal(err)
	}
	e.q.Close()
	if err := os.WriteFile(filepath.Join(e.opts.Dir, journalName), []byte(id+" "+strconv.FormatInt(bob, 10)+"\n"+id+" 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	d, err := e.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, r := range d.Rcpts {
		states[r.Addr] = r.State
	}
	if states["bob@example.com"] != stateDelivered || states["carol@example.com"] != stateQueued {
		t.Errorf("states after start = %v, want bob delivered, carol queued", states)
	}
	e.runOnce(t)
	for _, dl := range e.fake.Deliveries() {
		for _, r := range dl.Job.Recipients {
			if r.Addr.String() == "bob@example.com" {
				t.Errorf("bob was delivered again")
			}
		}
	}
}

// SQLite reuses the row ids of deleted recipients: a journal entry left from a finished message never
// marks a new message's recipient that got the same row id as delivered.
func TestJournalEntryOfFinishedMessageIgnored(t *testing.T) {
	e := newEnv(t, nil)
	old := e.submit(t, "alice@sender.test", "bob@example.com")
	var oldID int64
	if err := e.opts.DB.QueryRow(`SELECT id FROM queue_recipients WHERE msg_id = ?`, old).Scan(&oldID); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t) // delivered: its rows are deleted
	fresh := e.submit(t, "alice@sender.test", "carol@example.com")
	var freshID int64
	if err := e.opts.DB.QueryRow(`SELECT id FROM queue_recipients WHERE msg_id = ?`, fresh).Scan(&freshID); err != nil {
		t.Fatal(err)
	}
	if freshID != oldID {
		t.Fatalf("row id not reused (%d, %d): the test needs SQLite's reuse", oldID, freshID)
	}
	e.q.Close()
	if err := os.WriteFile(filepath.Join(e.opts.Dir, journalName), []byte(old+" "+strconv.FormatInt(oldID, 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	d, err := e.q.Get(context.Background(), fresh)
	if err != nil {
		t.Fatal(err)
	}
	if d.Rcpts[0].State != stateQueued {
		t.Errorf("the new message's recipient is %s after replaying an old journal entry, want queued", d.Rcpts[0].State)
	}
}
