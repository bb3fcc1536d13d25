package queue

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
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
			id := e.submitEnv(t, Envelope{From: address.MustParsePath("alice@sender.test"), Ret: ret, Recipients: []Recipient{{Addr: address.MustParseAddress("bob@example.com")}}})
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

// twoReadsDeliverer reads each body to its end. For domain hold it signals read and then waits for
// release before it reports; for any other domain it first waits for start.
type twoReadsDeliverer struct {
	hold          string
	read, release chan struct{}
	start         chan struct{}
}

func (d *twoReadsDeliverer) Deliver(ctx context.Context, b Batch) []Result {
	if b.Domain.String() != d.hold {
		<-d.start
	}
	var out []Result
	for _, j := range b.Jobs {
		err := func() error {
			rc, err := j.Open()
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		}()
		res := Result{Outcome: Delivered, Code: 250}
		if err != nil {
			res = Result{Outcome: Deferred, Code: 451, Enhanced: "4.3.0", Text: err.Error()}
		}
		for _, r := range j.Recipients {
			res.MsgID, res.Rcpt = j.MsgID, r.Addr
			out = append(out, res)
		}
	}
	if b.Domain.String() == d.hold {
		close(d.read)
		<-d.release
	}
	return out
}

// Corruption is a fact about one read: when batch Y finds the body corrupt while batch X of the same
// message already read it intact and got its 250, X's recipient is recorded as delivered, only Y's is
// quarantined, and a later bounce reports only Y's.
func TestCorruptReadQuarantinesOnlyItsOwnRecipients(t *testing.T) {
	d := &twoReadsDeliverer{hold: "example.com", read: make(chan struct{}), release: make(chan struct{}), start: make(chan struct{})}
	e := newEnv(t, func(o *Options) { o.Deliverer = d })
	ctx := context.Background()
	id := e.submit(t, "alice@sender.test", "bob@example.com", "dave@example.org")
	done := make(chan error, 1)
	go func() { _, err := e.q.RunOnce(ctx); done <- err }()
	waitFor(t, d.read, "the example.com batch to read the body")
	path := filepath.Join(e.opts.Dir, id)
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body[strings.Index(string(body), "Hello")] = 'J'
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	close(d.start)
	state := func(rcpt string) string {
		var s string
		if err := e.opts.DB.QueryRow(`SELECT state FROM queue_recipients WHERE msg_id = ? AND rcpt = ?`, id, rcpt).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	deadline := time.Now().Add(20 * time.Second)
	for state("dave@example.org") != stateQuarantined {
		if time.Now().After(deadline) {
			t.Fatal("the corrupt read's recipient was never quarantined")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(d.release)
	if err := waitFor(t, done, "RunOnce"); err != nil {
		t.Fatal(err)
	}
	if got := state("bob@example.com"); got != stateDelivered {
		t.Errorf("bob, whose batch read the body intact and got 250, is %s, want delivered", got)
	}
	if got := state("dave@example.org"); got != stateQuarantined {
		t.Errorf("dave, whose read failed, is %s, want quarantined", got)
	}
	e.q.opts.Deliverer = e.fake
	if err := e.q.Bounce(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t)
	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	if strings.Contains(dsns[0].Body, "bob@example.com") || !strings.Contains(dsns[0].Body, "dave@example.org") {
		t.Errorf("DSN after the bounce must report dave only:\n%s", dsns[0].Body)
	}
}

// When the transaction recording a 250 fails (SQLITE_BUSY, a full disk), the delivered recipient is not
// put back into the schedule (it would be delivered twice) and its journal entry stays counted as not
// recorded; the recorder records it once the database works again.
func TestDeliveredResultRecordedAgainAfterFailedCommit(t *testing.T) {
	gate := make(chan struct{})
	close(gate)
	d := settlingDeliverer{settled: make(chan string, 10), gate: gate}
	e := newEnv(t, func(o *Options) { o.Deliverer = d })
	ctx := context.Background()
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	if _, err := e.opts.DB.Exec(`CREATE TRIGGER fail_delivered BEFORE UPDATE OF state ON queue_recipients
		WHEN NEW.state = 'delivered' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t)
	if n := len(d.settled); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
	if got := e.q.Unrecorded(); got != 1 {
		t.Errorf("Unrecorded() = %d after the failed commit, want 1", got)
	}
	e.q.journal.mu.Lock()
	outstanding := e.q.journal.outstanding
	e.q.journal.mu.Unlock()
	if outstanding != 1 {
		t.Errorf("journal entries outstanding = %d after the failed commit, want 1", outstanding)
	}
	// Past every backoff: the delivered recipient is not tried again.
	e.clock.Advance(24 * time.Hour)
	e.runOnce(t)
	if n := len(d.settled); n != 1 {
		t.Errorf("%d deliveries after the failed commit, want 1 (no second delivery)", n)
	}
	if _, err := e.opts.DB.Exec(`DROP TRIGGER fail_delivered`); err != nil {
		t.Fatal(err)
	}
	// Recorded: the message is finished and its journal entry counted recorded.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := e.q.Get(ctx, id)
		e.q.journal.mu.Lock()
		outstanding = e.q.journal.outstanding
		e.q.journal.mu.Unlock()
		if errors.Is(err, ErrNotFound) && outstanding == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delivered result was never recorded: Get = %v, journal entries outstanding = %d", err, outstanding)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(d.settled); n != 1 {
		t.Errorf("%d deliveries in all, want 1", n)
	}
}

// A journal line torn by a write cut short is never applied: a last line without its newline may be the
// prefix of another recipient's row id ("msg 12" cut to "msg 1"), and a line whose checksum does not
// match was mangled. Whole lines, with or without a checksum, are applied.
func TestJournalTornOrMangledLineIgnored(t *testing.T) {
	e := newEnv(t, nil)
	id := e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com", "dave@example.com")
	rows := map[string]int64{}
	for _, r := range []string{"bob", "carol", "dave"} {
		var n int64
		if err := e.opts.DB.QueryRow(`SELECT id FROM queue_recipients WHERE msg_id = ? AND rcpt = ?`, id, r+"@example.com").Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows[r] = n
	}
	e.q.Close()
	good := string(appendEntry(nil, id, rows["bob"]))
	mangled := strings.Replace(string(appendEntry(nil, id, rows["dave"])), " ", " 0", 1) // checksum no longer matches
	// What is left of a line whose write was cut short: no newline, no checksum, perhaps a shorter row id.
	torn := id + " " + strconv.FormatInt(rows["carol"], 10)
	if err := os.WriteFile(filepath.Join(e.opts.Dir, journalName), []byte(good+mangled+torn), 0o600); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	d, err := e.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range d.Rcpts {
		got[r.Addr] = r.State
	}
	want := map[string]string{"bob@example.com": stateDelivered, "carol@example.com": stateQueued, "dave@example.com": stateQueued}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s after replay = %s, want %s", k, got[k], v)
		}
	}
}

// A failed journal write does not switch the journal off for the life of the process: the state callback
// hears of the failure (status and mxgate_component_up show it) and of the recovery, and the next write
// after the cause is gone goes to the journal again.
func TestJournalWriteFailureReportedAndRetried(t *testing.T) {
	var mu sync.Mutex
	var states []error
	gate := make(chan struct{})
	close(gate)
	d := settlingDeliverer{settled: make(chan string, 10), gate: gate}
	e := newEnv(t, func(o *Options) {
		o.Deliverer = d
		o.JournalState = func(err error) { mu.Lock(); states = append(states, err); mu.Unlock() }
	})
	ctx := context.Background()
	path := filepath.Join(e.opts.Dir, journalName)
	ro, err := os.Open(path) // writes to it fail, as on a full disk
	if err != nil {
		t.Fatal(err)
	}
	e.q.journal.mu.Lock()
	rw := e.q.journal.f
	e.q.journal.f = ro
	e.q.journal.mu.Unlock()

	first := e.submit(t, "alice@sender.test", "bob@example.com")
	e.runOnce(t)
	if _, err := e.q.Get(ctx, first); !errors.Is(err, ErrNotFound) {
		t.Errorf("delivery while the journal fails: %v, want recorded and finished", err)
	}
	if e.q.JournalErr() == nil {
		t.Error("JournalErr() = nil after a failed write")
	}
	mu.Lock()
	if len(states) != 1 || states[0] == nil {
		t.Errorf("journal states after the failure = %v, want one error", states)
	}
	mu.Unlock()

	e.q.journal.mu.Lock()
	e.q.journal.f = rw
	e.q.journal.mu.Unlock()
	ro.Close()
	second := e.submit(t, "alice@sender.test", "carol@example.com")
	e.runOnce(t)
	if _, err := e.q.Get(ctx, second); !errors.Is(err, ErrNotFound) {
		t.Errorf("delivery after the journal recovered: %v, want recorded and finished", err)
	}
	if err := e.q.JournalErr(); err != nil {
		t.Errorf("JournalErr() = %v after a write worked again", err)
	}
	mu.Lock()
	if len(states) != 2 || states[1] != nil {
		t.Errorf("journal states = %v, want the error, then nil", states)
	}
	mu.Unlock()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), second) {
		t.Errorf("journal %q holds no entry of the delivery after the recovery", data)
	}
}

// Under sustained load the journal never has nothing outstanding: past its size it is rotated to
// delivered.journal.1, which is removed once every entry written to it is recorded, so the journal stays
// bounded; entries are counted against the file they were written to.
func TestJournalRotatedUnderLoadAndRotatedFileDropped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, journalName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{f: f, path: path, trim: 1}
	t.Cleanup(j.close)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	write := func(msgID string, id int64) uint64 {
		gen, ok, err := j.write(msgID, id)
		if !ok || err != nil {
			t.Fatalf("write: %v %v", ok, err)
		}
		return gen
	}
	a, b := write("A", 1), write("B", 2)
	if err := j.recorded(journalCount{a: 1}); err != nil {
		t.Fatal(err)
	}
	if !exists(path + ".1") {
		t.Fatal("journal not rotated while an entry is outstanding past its size")
	}
	c := write("C", 3)
	if c == b {
		t.Fatalf("entry after rotation has the generation of the rotated file (%d)", c)
	}
	if err := j.recorded(journalCount{c: 1}); err != nil {
		t.Fatal(err)
	}
	if !exists(path+".1") || j.size != 0 {
		t.Errorf("rotated file present %v, current size %d; want the rotated file kept (B outstanding) and the current emptied",
			exists(path+".1"), j.size)
	}
	if err := j.recorded(journalCount{b: 1}); err != nil {
		t.Fatal(err)
	}
	if exists(path + ".1") {
		t.Error("rotated file kept after every entry written to it was recorded")
	}
}

// At start the rotated journal is replayed with the current one, and removed.
func TestRotatedJournalReplayedAtStart(t *testing.T) {
	e := newEnv(t, nil)
	id := e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com", "dave@example.com")
	rows := map[string]int64{}
	for _, r := range []string{"bob", "carol"} {
		var n int64
		if err := e.opts.DB.QueryRow(`SELECT id FROM queue_recipients WHERE msg_id = ? AND rcpt = ?`, id, r+"@example.com").Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows[r] = n
	}
	e.q.Close()
	path := filepath.Join(e.opts.Dir, journalName)
	if err := os.WriteFile(path+".1", appendEntry(nil, id, rows["bob"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, appendEntry(nil, id, rows["carol"]), 0o600); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	d, err := e.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range d.Rcpts {
		got[r.Addr] = r.State
	}
	want := map[string]string{"bob@example.com": stateDelivered, "carol@example.com": stateDelivered, "dave@example.com": stateQueued}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s after replay = %s, want %s", k, got[k], v)
		}
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("rotated journal still there after replay: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.opts.QuarantineDir, journalName+".1")); !os.IsNotExist(err) {
		t.Errorf("rotated journal moved to quarantine: %v", err)
	}
}
