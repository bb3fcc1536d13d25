package queue

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/store"
)

// delivery is what the fake deliverer saw of one job.
type delivery struct {
	Domain string
	Job    Job
	Body   string
	At     time.Time
}

// fakeDeliverer records batches and answers with script (default: delivered). DSNs are always delivered.
type fakeDeliverer struct {
	clock  *clocktest.Clock
	script func(j Job, r Recipient) Result
	// gate, when set, is waited on by every Deliver (or its ctx); started receives each batch first.
	gate    chan struct{}
	started chan Batch

	mu          sync.Mutex
	batches     []Batch
	deliveries  []delivery
	inflight    map[string]int
	maxInflight map[string]int
	inflightAll int
	maxAll      int
}

func newFake(clock *clocktest.Clock) *fakeDeliverer {
	return &fakeDeliverer{clock: clock, inflight: map[string]int{}, maxInflight: map[string]int{}}
}

func (f *fakeDeliverer) Deliver(ctx context.Context, b Batch) []Result {
	f.mu.Lock()
	f.batches = append(f.batches, b)
	f.inflight[b.Domain.String()]++
	f.maxInflight[b.Domain.String()] = max(f.maxInflight[b.Domain.String()], f.inflight[b.Domain.String()])
	f.inflightAll++
	f.maxAll = max(f.maxAll, f.inflightAll)
	script, gate := f.script, f.gate
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight[b.Domain.String()]--
		f.inflightAll--
		f.mu.Unlock()
	}()
	if f.started != nil {
		f.started <- b
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil
		}
	}
	var out []Result
	for _, j := range b.Jobs {
		body := ""
		if rc, err := j.Open(); err == nil {
			data, _ := io.ReadAll(rc)
			rc.Close()
			body = string(data)
		}
		f.mu.Lock()
		f.deliveries = append(f.deliveries, delivery{Domain: b.Domain.String(), Job: j, Body: body, At: f.clock.Now()})
		f.mu.Unlock()
		for _, r := range j.Recipients {
			res := Result{Outcome: Delivered, Code: 250, Enhanced: "2.0.0", Text: "ok", RemoteMTA: "mx." + b.Domain.String()}
			if script != nil && !isDSN(body) {
				res = script(j, r)
			}
			res.MsgID, res.Rcpt = j.MsgID, r.Addr
			out = append(out, res)
		}
	}
	return out
}

func isDSN(body string) bool { return strings.Contains(body, "report-type=delivery-status") }

func (f *fakeDeliverer) setGate(g chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = g
}

func (f *fakeDeliverer) Deliveries() []delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]delivery(nil), f.deliveries...)
}

func (f *fakeDeliverer) Batches() []Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Batch(nil), f.batches...)
}

// dsns returns the deliveries of DSNs.
func (f *fakeDeliverer) dsns() []delivery {
	var out []delivery
	for _, d := range f.Deliveries() {
		if isDSN(d.Body) {
			out = append(out, d)
		}
	}
	return out
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type env struct {
	q     *Queue
	fake  *fakeDeliverer
	clock *clocktest.Clock
	opts  Options
}

// newEnv opens a queue in a fresh directory with a fake clock and deliverer. fsync of bodies is a no-op
// (SQLite still syncs) to keep tests fast; the durability tests install their own hooks.
func newEnv(t testing.TB, edit func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := clocktest.New(t0)
	fake := newFake(clock)
	opts := Options{
		Dir:        filepath.Join(dir, "spool"),
		DB:         db,
		Deliverer:  fake,
		Now:        clock.Now,
		Rand:       rand.New(rand.NewPCG(1, 2)),
		Hostname:   "mx-out.example.net",
		Postmaster: "postmaster@mx-out.example.net",
		SyncFile:   func(*os.File) error { return nil },
		SyncDir:    func(string) error { return nil },
	}
	if edit != nil {
		edit(&opts)
	}
	e := &env{fake: fake, clock: clock, opts: opts}
	e.open(t)
	return e
}

func (e *env) open(t testing.TB) {
	t.Helper()
	q, err := Open(context.Background(), e.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	e.q = q
	t.Cleanup(func() { q.Close() })
}

func (e *env) submit(t *testing.T, from string, rcpts ...string) string {
	t.Helper()
	ev := Envelope{From: address.MustParsePath(from)}
	for _, r := range rcpts {
		ev.Recipients = append(ev.Recipients, Recipient{Addr: address.MustParseAddress(r)})
	}
	return e.submitEnv(t, ev)
}

func (e *env) submitEnv(t *testing.T, ev Envelope) string {
	t.Helper()
	body := fmt.Sprintf("From: %s\r\nSubject: test\r\nMessage-ID: <%d@sender.test>\r\n\r\nHello.\r\n", ev.From, time.Now().UnixNano())
	id, err := e.q.Submit(context.Background(), ev, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return id
}

func (e *env) runOnce(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := e.q.RunOnce(ctx)
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return n
}

// spoolFiles lists the body files in the spool (not the quarantine directory).
// spoolFiles lists the spool's files that hold (or may hold) a message: every file but the emptied spares.
func (e *env) spoolFiles(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(e.opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range ents {
		if en.IsDir() || en.Name() == journalName {
			continue
		}
		if strings.HasPrefix(en.Name(), sparePrefix) {
			if fi, err := en.Info(); err != nil || fi.Size() != 0 {
				t.Errorf("spare file %s is not empty", en.Name())
			}
			continue
		}
		out = append(out, en.Name())
	}
	return out
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.opts.DB.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func failWith(code int, enh, text string) func(Job, Recipient) Result {
	return func(Job, Recipient) Result {
		out := Deferred
		if code >= 500 {
			out = Failed
		}
		return Result{Outcome: out, Code: code, Enhanced: enh, Text: text, RemoteMTA: "mx1.example.com"}
	}
}

// waitFor receives from ch with a bounded deadline.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}
