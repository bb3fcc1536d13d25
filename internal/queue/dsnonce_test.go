package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/dsn"
)

// dsnsByRcpt counts the DSNs the fake delivered, by their recipient (the sender they report to).
func dsnsByRcpt(e *env) map[string]int {
	out := map[string]int{}
	for _, d := range e.fake.dsns() {
		for _, r := range d.Job.Recipients {
			out[r.Addr.String()]++
		}
	}
	return out
}

// A failure whose record fails (its transaction, which also queues the DSN, rolls back) is retried and then
// reported once: the rolled-back DSN leaves neither a body nor an index row behind, and the message recorded
// next to it, in the same batch, gets its own DSN once.
func TestFailureRecordedAfterFailedCommitGetsOneDSN(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.script = failWith(550, "5.1.1", "no such user")
	// b is accepted first (ids sort by time), so that it is recorded first in the batch's commit group:
	// its DSN is written before a's failure rolls the group back.
	e.submit(t, "carol@sender.test", "dave@example.com")
	e.clock.Advance(time.Millisecond)
	a := e.submit(t, "alice@sender.test", "bob@example.com")
	if _, err := e.opts.DB.Exec(fmt.Sprintf(`CREATE TRIGGER fail_a BEFORE UPDATE OF state ON queue_recipients
		WHEN NEW.state = 'failed' AND OLD.msg_id = '%s' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`, a)); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t)
	got := dsnsByRcpt(e)
	if got["alice@sender.test"] != 0 || got["carol@sender.test"] != 1 {
		t.Fatalf("DSNs after the failed commit: %v, want one to carol@sender.test only", got)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM queue_messages WHERE flags & ? != 0`, flagDSN); n != 0 {
		t.Errorf("%d DSNs left in the index after the failed commit, want 0 (the rolled-back one must not be there)", n)
	}
	if files := e.spoolFiles(t); len(files) != 1 || files[0] != a {
		t.Errorf("spool holds %v, want only %s (no body of the rolled-back DSN)", files, a)
	}
	if _, err := e.opts.DB.Exec(`DROP TRIGGER fail_a`); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(24 * time.Hour) // past the retry
	e.runOnce(t)
	got = dsnsByRcpt(e)
	if got["alice@sender.test"] != 1 || got["carol@sender.test"] != 1 || len(got) != 2 {
		t.Errorf("DSNs in all: %v, want one to each sender", got)
	}
	if _, err := e.q.Get(context.Background(), a); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed message still queued: %v", err)
	}
	if files := e.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool holds %v after everything finished", files)
	}
}

// An administrator's second Bounce of a message finds nothing: the sender gets one DSN.
func TestBounceTwiceSendsOneDSN(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	if err := e.q.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Bounce(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Bounce(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Bounce = %v, want ErrNotFound", err)
	}
	e.runOnce(t)
	if got := dsnsByRcpt(e); got["alice@sender.test"] != 1 || len(got) != 1 {
		t.Errorf("DSNs: %v, want one to alice@sender.test", got)
	}
}

// doubleReporter reports each recipient's result twice: through Job.Settled and again in what Deliver
// returns (twice there too). The message's result is its outcome; DSNs are delivered.
type doubleReporter struct {
	outcome Outcome

	mu   sync.Mutex
	dsns map[string]int // DSN deliveries by recipient
}

func (d *doubleReporter) Deliver(_ context.Context, b Batch) []Result {
	var out []Result
	for _, j := range b.Jobs {
		for _, r := range j.Recipients {
			res := Result{MsgID: j.MsgID, Rcpt: r.Addr, Outcome: d.outcome, Code: 550, Enhanced: "5.1.1", Text: "no such user"}
			if d.outcome == Deferred {
				res.Code, res.Enhanced, res.Text = 451, "4.4.1", "try later"
			}
			if j.From.IsNull() {
				res = Result{MsgID: j.MsgID, Rcpt: r.Addr, Outcome: Delivered, Code: 250}
				d.mu.Lock()
				d.dsns[r.Addr.String()]++
				d.mu.Unlock()
			}
			j.Settled(res)
			j.Settled(res)
			out = append(out, res, res)
		}
	}
	return out
}

// A result reported more than once (Settled twice, then again in Deliver's results) is recorded once: a
// permanent failure, or a deferral past the expiry, gets one DSN.
func TestResultReportedTwiceGetsOneDSN(t *testing.T) {
	for _, o := range []Outcome{Failed, Deferred} {
		t.Run(string(o), func(t *testing.T) {
			d := &doubleReporter{outcome: o, dsns: map[string]int{}}
			e := newEnv(t, func(opts *Options) { opts.Deliverer = d; opts.MaxLifetime = time.Hour })
			e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com")
			if o == Deferred {
				e.clock.Advance(2 * time.Hour) // the first attempt is past the expiry: the deferral fails
			}
			e.runOnce(t)
			e.clock.Advance(24 * time.Hour)
			e.runOnce(t)
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.dsns["alice@sender.test"] != 1 || len(d.dsns) != 1 {
				t.Errorf("DSNs: %v, want one to alice@sender.test", d.dsns)
			}
			if n := e.count(t, `SELECT COUNT(*) FROM queue_messages`); n != 0 {
				t.Errorf("%d messages left in the queue", n)
			}
		})
	}
}

// A recipient given twice in one envelope, however spelled (the domain's case, a trailing dot), is one
// recipient: delivered to once, and named once in the one DSN its failure earns.
func TestDuplicateRecipientNamedOnceInOneDSN(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.script = failWith(550, "5.1.1", "no such user")
	e.submit(t, "alice@sender.test", "bob@example.com", "bob@EXAMPLE.com", "bob@example.com.")
	e.runOnce(t)
	e.clock.Advance(24 * time.Hour)
	e.runOnce(t)
	var attempts int
	for _, d := range e.fake.Deliveries() {
		if !isDSN(d.Body) {
			attempts += len(d.Job.Recipients)
		}
	}
	if attempts != 1 {
		t.Errorf("%d deliveries to bob@example.com, want 1", attempts)
	}
	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	rep, err := dsn.Parse([]byte(dsns[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 1 || rep.Recipients[0].FinalRecipient != "bob@example.com" {
		t.Errorf("DSN recipients %+v, want bob@example.com once", rep.Recipients)
	}
}
