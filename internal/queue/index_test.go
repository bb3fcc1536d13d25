package queue

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
)

// ixEntry is one queued recipient as the scheduler's index or the database sees it.
type ixEntry struct {
	ID     int64
	Msg    string
	Domain string
	Next   time.Time
	Held   bool
}

// indexEntries returns the in-memory index, sorted by row id, after checking its heaps point back at their
// entries.
func indexEntries(t *testing.T, q *Queue) []ixEntry {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []ixEntry
	for _, e := range q.ix.rcpts {
		held := e.pos < 0
		if held != q.ix.held[e.msgID] {
			t.Errorf("recipient %d: in a heap = %v, message held = %v", e.id, !held, q.ix.held[e.msgID])
		}
		if !held {
			d := q.ix.domains[e.domain]
			if d == nil || e.pos >= len(d.rcpts) || d.rcpts[e.pos] != e {
				t.Errorf("recipient %d not at its place in the heap of %s", e.id, e.domain)
			}
		}
		out = append(out, ixEntry{ID: e.id, Msg: e.msgID, Domain: e.domain, Next: fromNS(e.next), Held: held})
	}
	for name, d := range q.ix.domains {
		if d.name != name {
			t.Errorf("domain %q filed under %q", d.name, name)
		}
		if d.pos >= 0 && q.ix.ready[d.pos] != d {
			t.Errorf("domain %s not at its place in the ready heap", name)
		}
	}
	slices.SortFunc(out, func(a, b ixEntry) int { return int(a.ID - b.ID) })
	return out
}

// dbEntries returns the queued recipients in the database, sorted by row id.
func dbEntries(t *testing.T, e *env) []ixEntry {
	t.Helper()
	rows, err := e.opts.DB.Query(`SELECT r.id, r.msg_id, r.domain, r.next_attempt, m.held FROM queue_recipients r
		JOIN queue_messages m ON m.id = r.msg_id WHERE r.state = ? ORDER BY r.id`, stateQueued)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []ixEntry
	for rows.Next() {
		var x ixEntry
		var next int64
		if err := rows.Scan(&x.ID, &x.Msg, &x.Domain, &next, &x.Held); err != nil {
			t.Fatal(err)
		}
		x.Next = fromNS(next)
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkIndex asserts that the index holds exactly the queued recipients of the database, with their next
// attempts and holds (nothing may be in flight).
func checkIndex(t *testing.T, e *env, when string) {
	t.Helper()
	if diff := cmp.Diff(dbEntries(t, e), indexEntries(t, e.q)); diff != "" {
		t.Errorf("%s: index differs from the database (-db +index):\n%s", when, diff)
	}
}

// The index follows every change of a queued recipient (Submit, deferral, delivery, DSN, Hold, Retry,
// Release, Bounce, Delete) and is rebuilt exactly from the database at Open.
func TestIndexFollowsDatabaseAndIsRebuiltAtOpen(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.fake.script = func(j Job, r Recipient) Result {
		switch {
		case strings.HasPrefix(r.Addr.String(), "later"):
			return Result{Outcome: Deferred, Code: 451, Enhanced: "4.2.0", Text: "busy"}
		case strings.HasPrefix(r.Addr.String(), "bad"):
			return Result{Outcome: Failed, Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		}
		return Result{Outcome: Delivered, Code: 250}
	}
	deferred := e.submit(t, "alice@sender.test", "later@example.com", "now@example.org")
	failing := e.submit(t, "alice@sender.test", "bad@example.net")
	held := e.submit(t, "alice@sender.test", "later1@example.com", "later2@example.net")
	other := e.submit(t, "bob@sender.test", "later@example.org")
	checkIndex(t, e, "after Submit")
	if n := len(indexEntries(t, e.q)); n != 6 {
		t.Errorf("%d recipients indexed, want 6", n)
	}

	e.runOnce(t) // deferrals, one delivery, one failure with its DSN (delivered too)
	checkIndex(t, e, "after the first attempts")
	if len(e.fake.dsns()) != 1 {
		t.Errorf("%d DSNs, want 1", len(e.fake.dsns()))
	}
	if _, err := e.q.Get(ctx, failing); err == nil {
		t.Errorf("failed message still queued")
	}

	if err := e.q.Hold(ctx, held); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, e, "after Hold")
	if err := e.q.Retry(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retry(ctx, deferred); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, e, "after Retry")

	// Reopen: the index is rebuilt from the database, hold included.
	before := indexEntries(t, e.q)
	e.q.Close()
	e.open(t)
	checkIndex(t, e, "after reopen")
	if diff := cmp.Diff(before, indexEntries(t, e.q)); diff != "" {
		t.Errorf("index after reopen (-before +after):\n%s", diff)
	}

	// Retry made the deferred message due; the held one stays put although it is due too.
	n0 := len(e.fake.Deliveries())
	e.runOnce(t)
	for _, d := range e.fake.Deliveries()[n0:] {
		if d.Job.MsgID != deferred {
			t.Errorf("delivery of %s, want only %s (retried, not held)", d.Job.MsgID, deferred)
		}
	}
	checkIndex(t, e, "after the retried attempt")

	if err := e.q.Release(ctx, held); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, e, "after Release")
	n0 = len(e.fake.Deliveries())
	e.runOnce(t)
	got := 0
	for _, d := range e.fake.Deliveries()[n0:] {
		if d.Job.MsgID == held {
			got++
		}
	}
	if got != 2 {
		t.Errorf("%d jobs of the released message, want 2 (two domains)", got)
	}
	checkIndex(t, e, "after the released attempt")

	if err := e.q.Bounce(ctx, held); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, e, "after Bounce (DSN queued)")
	if err := e.q.Delete(ctx, other); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, e, "after Delete")
	e.runOnce(t)
	checkIndex(t, e, "after the bounce's DSN went out")
	if got := len(e.fake.dsns()); got != 2 {
		t.Errorf("%d DSNs, want 2", got)
	}
}

// Due work comes out in the order of next attempt, then message (acceptance order), then recipient; a
// domain's batch holds at most MaxBatch messages; and the domain that is due first goes first.
func TestIndexDueOrder(t *testing.T) {
	ix := newDueIndex(2, 2, 0)
	at := func(s int) int64 { return ns(t0.Add(time.Duration(s) * time.Second)) }
	ix.add(1, "m3", "a.example", at(5))
	ix.add(2, "m1", "a.example", at(10))
	ix.add(3, "m2", "a.example", at(5))
	ix.add(4, "m2", "a.example", at(5))
	ix.add(5, "m4", "b.example", at(3))
	ix.add(6, "m5", "a.example", at(20))

	d, key := ix.first()
	if d.name != "b.example" || key != at(3) {
		t.Fatalf("first() = %s at %v, want b.example at +3s", d.name, fromNS(key))
	}
	if got := ix.take(d, at(2)); len(got) != 0 {
		t.Errorf("take before due = %d recipients, want none", len(got))
	}
	ix.take(d, at(3))
	ix.done("b.example")
	if _, ok := ix.domains["b.example"]; ok {
		t.Errorf("empty idle domain still kept")
	}

	ids := func(rs []*dueRcpt) []int64 {
		var out []int64
		for _, r := range rs {
			out = append(out, r.id)
		}
		return out
	}
	d, key = ix.first()
	if d.name != "a.example" || key != at(5) {
		t.Fatalf("first() = %s at %v, want a.example at +5s", d.name, fromNS(key))
	}
	// At +30s everything of a.example is due: m2 (ids 3, 4) and m3 (id 1) at +5s, then m1 at +10s, m5.
	got := ids(ix.take(d, at(30)))
	if diff := cmp.Diff([]int64{3, 4, 1}, got); diff != "" {
		t.Errorf("first batch (-want +got):\n%s", diff)
	}
	got = ids(ix.take(d, at(30)))
	if diff := cmp.Diff([]int64{2, 6}, got); diff != "" {
		t.Errorf("second batch (-want +got):\n%s", diff)
	}
	if len(ix.rcpts) != 0 || len(ix.byMsg) != 0 {
		t.Errorf("index not empty after taking everything: %d, %d", len(ix.rcpts), len(ix.byMsg))
	}
}

// A domain with a batch in flight waits BatchWait for more work unless it has a full batch; a domain at
// PerDomain batches is not ready at all; hold takes a message out of the heaps and release puts it back.
func TestIndexBatchWaitAndLimits(t *testing.T) {
	const wait = int64(20 * time.Millisecond)
	ix := newDueIndex(2, 3, wait)
	now := ns(t0)
	ix.add(1, "m1", "a.example", now)
	d, key := ix.first()
	if key != now {
		t.Errorf("idle domain ready at %+dns, want at once", key-now)
	}
	ix.take(d, now)
	ix.add(2, "m2", "a.example", now)
	if _, key = ix.first(); key != now+wait {
		t.Errorf("busy domain ready at %+dns, want after BatchWait", key-now)
	}
	ix.add(3, "m3", "a.example", now)
	ix.add(4, "m4", "a.example", now)
	if _, key = ix.first(); key != now {
		t.Errorf("busy domain with a full batch ready at %+dns, want at once", key-now)
	}
	ix.take(d, now)
	ix.add(5, "m5", "a.example", now)
	if d, _ := ix.first(); d != nil {
		t.Errorf("domain at PerDomain batches is ready")
	}
	ix.done("a.example")
	if _, key = ix.first(); key != now+wait {
		t.Errorf("domain with one batch left ready at %+dns, want after BatchWait", key-now)
	}
	ix.done("a.example")
	if _, key = ix.first(); key != now {
		t.Errorf("idle domain ready at %+dns, want at once", key-now)
	}

	ix.hold("m5")
	ix.add(6, "m5", "a.example", now) // a result of a batch in flight comes back while held
	if d, _ := ix.first(); d != nil {
		t.Errorf("held message's domain is ready")
	}
	ix.retry("m5", now-1)
	ix.release("m5")
	if d, key := ix.first(); d == nil || key != now-1 || len(d.rcpts) != 2 {
		t.Errorf("after Release: first() = %v at %v, want a.example with 2 recipients, retried", d, key)
	}
	ix.removeMsg("m5")
	if d, _ := ix.first(); d != nil || len(ix.domains) != 0 || len(ix.rcpts) != 0 {
		t.Errorf("index not empty after removeMsg: %d domains, %d recipients", len(ix.domains), len(ix.rcpts))
	}
}

// A burst of Submits causes one dispatch per group commit, not one per Submit.
func TestKicksCoalesced(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Now = time.Now
		o.Concurrency = 200
		o.GroupCommitWindow = 2 * time.Millisecond
	})
	gate := make(chan struct{})
	e.fake.gate = gate
	e.fake.started = make(chan Batch, 200)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	defer close(gate)

	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.submitEnv(t, Envelope{From: address.MustParsePath("a@sender.test"), Recipients: []Recipient{{Addr: address.MustParseAddress(fmt.Sprintf("u@d%d.example", i))}}})
		}()
	}
	wg.Wait()
	for range n {
		waitFor(t, e.fake.started, "a batch to start")
	}
	rounds, commits := e.q.rounds.Load(), e.q.Commits()
	t.Logf("%d Submits, %d group commits, %d dispatch rounds", n, commits, rounds)
	if rounds > commits || rounds >= n {
		t.Errorf("%d dispatch rounds for %d Submits in %d commits, want at most one per commit", rounds, n, commits)
	}
}

// While a domain has a batch in flight, the work arriving meanwhile forms the next batch, which starts when
// the first one finishes (BatchWait not yet over), or at once when it is full (MaxBatch).
func TestNextBatchFormsWhileOneRuns(t *testing.T) {
	for _, tt := range []struct {
		name     string
		maxBatch int
		want     []int // jobs per batch, in order
	}{
		{"waits for the running batch", 10, []int{1, 3}},
		{"full batch starts at once", 3, []int{1, 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.Now = time.Now
				o.MaxBatch = tt.maxBatch
				o.BatchWait = time.Hour
			})
			gate := make(chan struct{})
			e.fake.setGate(gate)
			e.fake.started = make(chan Batch, 10)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.q.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				<-done
			})

			e.submit(t, "a@sender.test", "u0@example.com")
			waitFor(t, e.fake.started, "the first batch")
			var wg sync.WaitGroup
			for i := 1; i <= 3; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					e.submit(t, "a@sender.test", fmt.Sprintf("u%d@example.com", i))
				}()
			}
			wg.Wait()
			if tt.maxBatch == 3 {
				// A full batch does not wait for the first one (PerDomain 2).
				b := waitFor(t, e.fake.started, "the full second batch")
				close(gate)
				if len(b.Jobs) != 3 {
					t.Errorf("second batch has %d jobs, want 3", len(b.Jobs))
				}
			} else {
				// The three are indexed (Submit returned) and wait for BatchWait or the running batch.
				if next, ok := e.q.nextDue(); !ok || time.Until(next) < 30*time.Minute {
					t.Errorf("nextDue() = %v, %v; want about an hour from now", next, ok)
				}
				select {
				case b := <-e.fake.started:
					t.Fatalf("a batch of %d started while the domain was busy and BatchWait not over", len(b.Jobs))
				default:
				}
				close(gate)
				waitFor(t, e.fake.started, "the second batch")
			}
			var got []int
			for _, b := range e.fake.Batches() {
				got = append(got, len(b.Jobs))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("jobs per batch (-want +got):\n%s", diff)
			}
		})
	}
}
