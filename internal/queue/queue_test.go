package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dsn"
)

func TestSubmitDurabilityOrder(t *testing.T) {
	ioErr := errors.New("injected EIO")
	tests := []struct {
		name      string
		syncFile  error
		syncDir   error
		wantSpace bool
	}{
		{name: "file fsync fails", syncFile: ioErr},
		{name: "directory fsync fails", syncDir: ioErr},
		{name: "ENOSPC", syncFile: syscall.ENOSPC, wantSpace: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.SyncFile = func(f *os.File) error {
					if !strings.HasPrefix(filepath.Base(f.Name()), tmpPrefix) {
						t.Errorf("fsync of %s, want the temporary file", f.Name())
					}
					return tt.syncFile
				}
				o.SyncDir = func(string) error { return tt.syncDir }
			})
			_, err := e.q.Submit(context.Background(), Envelope{From: address.MustParsePath("a@sender.test"),
				Recipients: []Recipient{{Addr: address.MustParseAddress("b@example.com")}}}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
			if !errors.Is(err, ErrTemporary) {
				t.Fatalf("Submit error = %v, want ErrTemporary", err)
			}
			if got := errors.Is(err, ErrNoSpace); got != tt.wantSpace {
				t.Errorf("errors.Is(err, ErrNoSpace) = %v, want %v", got, tt.wantSpace)
			}
			if files := e.spoolFiles(t); len(files) != 0 {
				t.Errorf("spool holds %v after a failed Submit", files)
			}
			if n := e.count(t, `SELECT COUNT(*) FROM queue_messages`); n != 0 {
				t.Errorf("%d index rows after a failed Submit", n)
			}
		})
	}
}

// TestSubmitOrder checks that the body is renamed and the directory synced before the index row exists,
// and that Submit returns only after the row is committed.
func TestSubmitOrder(t *testing.T) {
	var events []string
	e := newEnv(t, func(o *Options) {
		o.SyncFile = func(f *os.File) error {
			events = append(events, "fsync "+strings.SplitN(filepath.Base(f.Name()), ".", 2)[0])
			return nil
		}
		o.SyncDir = func(dir string) error {
			var n int
			if err := o.DB.QueryRow(`SELECT COUNT(*) FROM queue_messages`).Scan(&n); err != nil {
				t.Error(err)
			}
			ents, _ := os.ReadDir(dir)
			renamed := false
			for _, en := range ents {
				renamed = renamed || (!en.IsDir() && !strings.HasPrefix(en.Name(), tmpPrefix))
			}
			events = append(events, fmt.Sprintf("dirsync renamed=%v rows=%d", renamed, n))
			return nil
		}
	})
	id := e.submit(t, "a@sender.test", "b@example.com")
	events = append(events, fmt.Sprintf("returned rows=%d", e.count(t, `SELECT COUNT(*) FROM queue_messages WHERE id = ?`, id)))
	want := []string{"fsync tmp", "dirsync renamed=true rows=0", "returned rows=1"}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		r.n--
		return copy(p, "Subject: x\r\n"), nil
	}
	return 0, errors.New("client went away")
}

func TestSubmitReadAndCommitErrors(t *testing.T) {
	e := newEnv(t, nil)
	ev := Envelope{From: address.MustParsePath("a@sender.test"), Recipients: []Recipient{{Addr: address.MustParseAddress("b@example.com")}}}
	if _, err := e.q.Submit(context.Background(), ev, &failingReader{n: 3}); !errors.Is(err, ErrTemporary) {
		t.Errorf("Submit with a failing body = %v, want ErrTemporary", err)
	}
	if n := e.count(t, `SELECT COUNT(*) FROM queue_messages`); n != 0 {
		t.Errorf("%d index rows after a failed body read", n)
	}
	// An index that cannot commit: the body must not stay behind.
	e.opts.DB.Close()
	if _, err := e.q.Submit(context.Background(), ev, strings.NewReader("Subject: x\r\n\r\nx\r\n")); !errors.Is(err, ErrTemporary) {
		t.Errorf("Submit with a closed index = %v, want ErrTemporary", err)
	}
	if files := e.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool holds %v after failed Submits", files)
	}
}

func TestSubmitInvalid(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		env  Envelope
		body string
	}{
		{"no recipients", Envelope{From: address.MustParsePath("a@b.test")}, "x"},
		// Typed values built from their fields rather than parsed: what the index would store could not be
		// read back.
		{"no recipient address", Envelope{Recipients: []Recipient{{}}}, "x"},
		{"bad recipient", Envelope{Recipients: []Recipient{{Addr: address.Address{Local: "b\r\nRCPT TO:<x@y>", Domain: address.MustParseDomain("example.com")}}}}, "x"},
		{"bad sender", Envelope{From: address.PathTo(address.Address{Local: "a\nb", Domain: address.MustParseDomain("c.test")}),
			Recipients: []Recipient{{Addr: address.MustParseAddress("b@example.com")}}}, "x"},
		{"empty body", Envelope{Recipients: []Recipient{{Addr: address.MustParseAddress("b@example.com")}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.q.Submit(context.Background(), tt.env, strings.NewReader(tt.body))
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Submit error = %v, want ErrInvalid", err)
			}
		})
	}
	if files := e.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool holds %v", files)
	}
}

func TestGroupCommit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.GroupCommitWindow = 2 * time.Millisecond })
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.q.Submit(context.Background(), Envelope{From: address.MustParsePath("a@sender.test"),
				Recipients: []Recipient{{Addr: address.MustParseAddress(fmt.Sprintf("u%d@example.com", i))}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}
	if got := e.count(t, `SELECT COUNT(*) FROM queue_messages`); got != n {
		t.Errorf("%d messages indexed, want %d", got, n)
	}
	if c := e.q.Commits(); c > n/4 {
		t.Errorf("%d index transactions for %d concurrent Submits, want at most %d", c, n, n/4)
	} else {
		t.Logf("%d Submits in %d transactions", n, c)
	}
}

func TestPerRecipientOutcomes_SMTP13(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.script = func(j Job, r Recipient) Result {
		if r.Addr.String() == "bad@example.com" {
			return Result{Outcome: Failed, Code: 550, Enhanced: "5.1.1", Text: "no such user", RemoteMTA: "mx1.example.com"}
		}
		return Result{Outcome: Delivered, Code: 250, Enhanced: "2.0.0", Text: "ok", RemoteMTA: "mx1.example.com"}
	}
	id := e.submit(t, "alice@sender.test", "bad@example.com", "good@example.com")
	e.runOnce(t)

	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	d := dsns[0]
	// SMTP-17: the DSN goes to the return path with MAIL FROM:<>.
	if got := d.Job.Recipients; len(got) != 1 || got[0].Addr.String() != "alice@sender.test" || d.Domain != "sender.test" {
		t.Errorf("DSN recipients %+v to %s, want alice@sender.test", got, d.Domain)
	}
	// SMTP-21: NOTIFY only NEVER, no RET.
	if got := d.Job.Recipients[0].Notify; !cmp.Equal(got, []string{"NEVER"}) || d.Job.Ret != "" {
		t.Errorf("DSN NOTIFY %v RET %q, want [NEVER] and none", got, d.Job.Ret)
	}
	rep, err := dsn.Parse([]byte(d.Body))
	if err != nil {
		t.Fatalf("DSN does not parse: %v", err)
	}
	want := []dsn.Recipient{{FinalRecipient: "bad@example.com", Action: dsn.ActionFailed, Status: "5.1.1",
		RemoteMTA: "mx1.example.com", DiagnosticCode: "550 5.1.1 no such user", LastAttempt: t0}}
	if diff := cmp.Diff(want, rep.Recipients); diff != "" {
		t.Errorf("DSN recipients (-want +got):\n%s", diff)
	}
	if rep.To != "<alice@sender.test>" || rep.ReportingMTA != "mx-out.example.net" {
		t.Errorf("DSN To %q Reporting-MTA %q", rep.To, rep.ReportingMTA)
	}
	// Both recipients are final, so the message and its body are gone.
	if _, err := e.q.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after completion: %v, want ErrNotFound", err)
	}
	if files := e.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool holds %v after all deliveries", files)
	}
}

func TestPartialDeferralKeepsMessage_SMTP13(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.script = func(j Job, r Recipient) Result {
		if r.Addr.String() == "later@example.com" {
			return Result{Outcome: Deferred, Code: 451, Enhanced: "4.2.0", Text: "mailbox busy"}
		}
		return Result{Outcome: Delivered, Code: 250}
	}
	id := e.submit(t, "alice@sender.test", "later@example.com", "now@example.com")
	e.runOnce(t)
	d, err := e.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range d.Rcpts {
		got[r.Addr] = r.State
	}
	if diff := cmp.Diff(map[string]string{"later@example.com": "queued", "now@example.com": "delivered"}, got); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	if len(d.Timeline) != 2 {
		t.Errorf("timeline has %d entries, want 2", len(d.Timeline))
	}
	if len(e.fake.dsns()) != 0 {
		t.Errorf("DSN sent for a deferral")
	}
	// The next attempt carries only the deferred recipient.
	e.clock.Advance(time.Hour)
	e.fake.script = nil
	e.runOnce(t)
	ds := e.fake.Deliveries()
	last := ds[len(ds)-1]
	if len(last.Job.Recipients) != 1 || last.Job.Recipients[0].Addr.String() != "later@example.com" || last.Job.Attempt != 2 {
		t.Errorf("second attempt %+v, want only later@example.com as attempt 2", last.Job)
	}
}

func TestBackoffWithJitter_SMTP10(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Backoff = Backoff{Initial: 15 * time.Minute, Factor: 2, Max: 4 * time.Hour, Jitter: 0.2}
	})
	e.fake.script = failWith(451, "4.4.1", "try again later")
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	nominal := []time.Duration{15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 4 * time.Hour, 4 * time.Hour}
	jittered := false
	for i, base := range nominal {
		if n := e.runOnce(t); n != 1 {
			t.Fatalf("attempt %d: RunOnce dispatched %d jobs, want 1", i+1, n)
		}
		d, err := e.q.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		delay := d.Rcpts[0].NextAttempt.Sub(e.clock.Now())
		if delay < base || delay >= base+base/5 {
			t.Errorf("after attempt %d: retry in %v, want in [%v, %v)", i+1, delay, base, base+base/5)
		}
		if delay != base {
			jittered = true
		}
		if d.Rcpts[0].Attempts != i+1 {
			t.Errorf("after attempt %d: attempts = %d", i+1, d.Rcpts[0].Attempts)
		}
		// Not due a moment before the retry time.
		e.clock.Advance(delay - time.Second)
		if n := e.runOnce(t); n != 0 {
			t.Fatalf("dispatched %d jobs before the retry time", n)
		}
		e.clock.Advance(time.Second)
	}
	if !jittered {
		t.Errorf("no jitter in %d delays", len(nominal))
	}
}

func TestExpiryBounceAfterFinalAttempt_STS84(t *testing.T) {
	const life = 5 * 24 * time.Hour
	e := newEnv(t, func(o *Options) { o.MaxLifetime = life })
	e.fake.script = func(j Job, r Recipient) Result {
		return Result{Outcome: Deferred, Code: 0, Text: "certificate-expired: MX certificate expired",
			ResultType: "certificate-expired", RemoteMTA: "mx1.example.com", Policy: "mta-sts enforce"}
	}
	id := e.submitEnv(t, Envelope{From: address.MustParsePath("alice@sender.test"), EnvID: "ENV-42",
		Recipients: []Recipient{{Addr: address.MustParseAddress("bob@example.com"), ORcpt: "rfc822;bob@example.com"}}})
	expires := t0.Add(life)
	var attempts []time.Time
	for i := 0; i < 100; i++ {
		if n := e.runOnce(t); n > 0 {
			attempts = append(attempts, e.clock.Now())
		}
		if len(e.fake.dsns()) > 0 {
			break
		}
		if e.clock.Now().After(expires) {
			t.Fatalf("no bounce after the expiry time")
		}
		if len(e.fake.dsns()) == 0 && e.clock.Now().Before(expires) {
			d, err := e.q.Get(context.Background(), id)
			if err != nil {
				t.Fatalf("message gone before expiry at %v: %v", e.clock.Now(), err)
			}
			e.clock.Set(d.Rcpts[0].NextAttempt)
		}
	}
	if got := attempts[len(attempts)-1]; !got.Equal(expires) {
		t.Errorf("final attempt at %v, want exactly at expiry %v", got, expires)
	}
	for _, a := range attempts[:len(attempts)-1] {
		if !a.Before(expires) {
			t.Errorf("attempt at %v after expiry", a)
		}
	}
	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	rep, err := dsn.Parse([]byte(dsns[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	if rep.EnvID != "ENV-42" {
		t.Errorf("Original-Envelope-Id = %q", rep.EnvID)
	}
	r := rep.Recipients[0]
	if r.Action != dsn.ActionFailed || r.Status != "5.4.7" || r.OriginalRecipient != "rfc822;bob@example.com" {
		t.Errorf("recipient %+v, want failed 5.4.7 with ORCPT", r)
	}
	if !strings.Contains(r.DiagnosticCode, "certificate-expired") {
		t.Errorf("Diagnostic-Code %q does not keep the last error", r.DiagnosticCode)
	}
	if !strings.Contains(rep.Human, "Delivery time expired") {
		t.Errorf("human part does not explain expiry:\n%s", rep.Human)
	}
	if _, err := e.q.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired message still queued: %v", err)
	}
}

func TestNoDSN_SMTP17_SMTP22(t *testing.T) {
	tests := []struct {
		name    string
		from    string
		notify  []string
		wantDSN bool
	}{
		{"default NOTIFY", "alice@sender.test", nil, true},
		{"NOTIFY=FAILURE", "alice@sender.test", []string{"FAILURE"}, true},
		{"NOTIFY=NEVER", "alice@sender.test", []string{"NEVER"}, false},
		{"NOTIFY=SUCCESS,DELAY", "alice@sender.test", []string{"SUCCESS", "DELAY"}, false},
		{"null sender", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.fake.script = failWith(550, "5.1.1", "no such user")
			e.submitEnv(t, Envelope{From: address.MustParsePath(tt.from), Recipients: []Recipient{{Addr: address.MustParseAddress("bob@example.com"), Notify: tt.notify}}})
			e.runOnce(t)
			if got := len(e.fake.dsns()); got != btoi(tt.wantDSN) {
				t.Errorf("%d DSNs, want %d", got, btoi(tt.wantDSN))
			}
			if n := e.count(t, `SELECT COUNT(*) FROM queue_messages`); n != 0 {
				t.Errorf("%d messages left in the queue", n)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDSNOfRequireTLSMessage_REQ14(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.script = failWith(550, "5.7.1", "rejected")
	e.submitEnv(t, Envelope{From: address.MustParsePath("alice@sender.test"), Ret: "FULL", RequireTLS: true,
		Recipients: []Recipient{{Addr: address.MustParseAddress("bob@example.com")}}})
	e.runOnce(t)
	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	if !dsns[0].Job.RequireTLS {
		t.Errorf("DSN of a REQUIRETLS message sent without REQUIRETLS")
	}
	rep, err := dsn.Parse([]byte(dsns[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	if rep.ReturnedType != "text/rfc822-headers" || strings.Contains(string(rep.Returned), "Hello.") {
		t.Errorf("third part %q %q, want headers only", rep.ReturnedType, rep.Returned)
	}
}

func TestReportBounces(t *testing.T) {
	for _, to := range []string{"", "tlsrpt-bounces@mx-out.example.net"} {
		t.Run("ReportBounceTo="+to, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.ReportBounceTo = to })
			e.fake.script = failWith(550, "5.1.1", "no such user")
			e.submitEnv(t, Envelope{From: address.MustParsePath("tlsrpt@mx-out.example.net"), Report: true,
				Recipients: []Recipient{{Addr: address.MustParseAddress("tlsrpt@example.com")}}})
			e.runOnce(t)
			dsns := e.fake.dsns()
			if to == "" {
				if len(dsns) != 0 {
					t.Errorf("%d DSNs, want the bounce dropped", len(dsns))
				}
				return
			}
			if len(dsns) != 1 || dsns[0].Job.Recipients[0].Addr.String() != to {
				t.Errorf("DSNs %+v, want one to %s", dsns, to)
			}
		})
	}
}

func TestMissingResultAndPanicDefer(t *testing.T) {
	e := newEnv(t, nil)
	calls := 0
	e.fake.script = func(j Job, r Recipient) Result {
		calls++
		if calls == 1 {
			panic("deliverer bug")
		}
		return Result{Outcome: "something new"}
	}
	id := e.submit(t, "alice@sender.test", "bob@example.com")
	e.runOnce(t)
	e.clock.Advance(time.Hour)
	e.runOnce(t)
	d, err := e.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Rcpts[0].State != stateQueued || d.Rcpts[0].Attempts != 2 {
		t.Errorf("recipient %+v, want queued after 2 attempts", d.Rcpts[0])
	}
	var outcomes []string
	for _, a := range d.Timeline {
		outcomes = append(outcomes, string(a.Outcome)+": "+a.Text)
	}
	want := []string{"deferred: internal error during delivery", "deferred: "}
	if diff := cmp.Diff(want, outcomes); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
}

func TestRestartDeliversAllOnce(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Concurrency = 8 })
	const n = 1000
	ids := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				id, err := e.q.Submit(context.Background(), Envelope{From: address.MustParsePath("alice@sender.test"),
					Recipients: []Recipient{{Addr: address.MustParseAddress(fmt.Sprintf("u%d@d%d.example", i, i%10))}}},
					strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				ids[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Submit: %v", err)
	}
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen on the same spool and index with a new deliverer.
	e.fake = newFake(e.clock)
	e.opts.Deliverer = e.fake
	e.open(t)
	e.runOnce(t)
	got := map[string]int{}
	for _, d := range e.fake.Deliveries() {
		got[d.Job.MsgID]++
	}
	if len(got) != n {
		t.Errorf("%d messages delivered, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 || !ids[id] {
			t.Errorf("message %s delivered %d times (submitted: %v)", id, c, ids[id])
		}
	}
	if files := e.spoolFiles(t); len(files) != 0 {
		t.Errorf("%d body files left", len(files))
	}
	if e.q.Quarantined() != 0 {
		t.Errorf("%d quarantined", e.q.Quarantined())
	}
}

func TestQuarantineAtOpen(t *testing.T) {
	e := newEnv(t, nil)
	missing := e.submit(t, "alice@sender.test", "a@example.com")
	empty := e.submit(t, "alice@sender.test", "b@example.com")
	short := e.submit(t, "alice@sender.test", "c@example.com")
	good := e.submit(t, "alice@sender.test", "d@example.com")
	e.q.Close()

	dir := e.opts.Dir
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Remove(filepath.Join(dir, missing)))
	must(os.Truncate(filepath.Join(dir, empty), 0))
	must(os.Truncate(filepath.Join(dir, short), 5))
	must(os.WriteFile(filepath.Join(dir, "tmp.leftover.123"), []byte("partial"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "0orphan"), []byte("never acknowledged"), 0o600))

	e.open(t)
	if got := e.q.Quarantined(); got != 3 {
		t.Errorf("Quarantined() = %d, want 3", got)
	}
	if diff := cmp.Diff([]string{good}, e.spoolFiles(t)); diff != "" {
		t.Errorf("spool files (-want +got):\n%s", diff)
	}
	qfiles, _ := os.ReadDir(filepath.Join(dir, "quarantine"))
	var qnames []string
	for _, f := range qfiles {
		qnames = append(qnames, f.Name())
	}
	for _, want := range []string{"0orphan", empty, short} {
		found := false
		for _, n := range qnames {
			found = found || n == want
		}
		if !found {
			t.Errorf("%s not in quarantine directory %v", want, qnames)
		}
	}
	e.runOnce(t)
	ds := e.fake.Deliveries()
	if len(ds) != 1 || ds[0].Job.MsgID != good {
		t.Errorf("deliveries %+v, want only %s", ds, good)
	}
	for _, id := range []string{missing, empty, short} {
		d, err := e.q.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("quarantined message %s deleted: %v", id, err)
		}
		if d.State != stateQuarantined || d.QuarantineReason == "" {
			t.Errorf("%s: state %q reason %q", id, d.State, d.QuarantineReason)
		}
	}
	list, err := e.q.List(context.Background(), Filter{State: stateQuarantined})
	if err != nil || len(list) != 3 {
		t.Errorf("List(quarantined) = %d messages, %v; want 3", len(list), err)
	}
}

func TestAdminOperations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.fake.script = failWith(451, "4.2.1", "busy")
	id := e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.org")
	other := e.submit(t, "zed@sender.test", "dan@example.com")
	e.runOnce(t)

	// Hold: not dispatched even when due.
	if err := e.q.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retry(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retry(ctx, other); err != nil {
		t.Fatal(err)
	}
	before := len(e.fake.Deliveries())
	e.runOnce(t)
	for _, d := range e.fake.Deliveries()[before:] {
		if d.Job.MsgID == id {
			t.Errorf("held message delivered")
		}
	}
	held, err := e.q.List(ctx, Filter{HeldOnly: true})
	if err != nil || len(held) != 1 || held[0].ID != id || held[0].State != "held" {
		t.Errorf("List(HeldOnly) = %+v, %v", held, err)
	}
	byDomain, _ := e.q.List(ctx, Filter{Domain: "example.org"})
	bySender, _ := e.q.List(ctx, Filter{Sender: "zed@sender.test"})
	if len(byDomain) != 1 || byDomain[0].ID != id || len(bySender) != 1 || bySender[0].ID != other {
		t.Errorf("List by domain %+v, by sender %+v", byDomain, bySender)
	}

	// Release and Retry: due now.
	if err := e.q.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retry(ctx, id); err != nil {
		t.Fatal(err)
	}
	before = len(e.fake.Deliveries())
	e.runOnce(t)
	n := 0
	for _, d := range e.fake.Deliveries()[before:] {
		if d.Job.MsgID == id {
			n++
		}
	}
	if n != 2 {
		t.Errorf("after Release+Retry: %d jobs of the message, want 2 (two domains)", n)
	}
	sum, err := e.q.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"example.com": 2, "example.org": 1}, sum.QueuedByDomain); diff != "" {
		t.Errorf("Summary.QueuedByDomain (-want +got):\n%s", diff)
	}
	if sum.Messages != 2 || !sum.Oldest.Equal(t0) {
		t.Errorf("Summary = %+v", sum)
	}

	// Bounce: a DSN with 5.0.0 for both recipients, message gone.
	if err := e.q.Bounce(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t)
	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs after Bounce, want 1", len(dsns))
	}
	rep, err := dsn.Parse([]byte(dsns[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 2 || rep.Recipients[0].Status != "5.0.0" || !strings.Contains(rep.Recipients[0].DiagnosticCode, "bounced by administrator") {
		t.Errorf("Bounce DSN recipients %+v", rep.Recipients)
	}
	if _, err := e.q.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Bounce: %v", err)
	}

	// Delete: gone without a DSN.
	if err := e.q.Delete(ctx, other); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t)
	if got := len(e.fake.dsns()); got != 1 {
		t.Errorf("%d DSNs after Delete, want still 1", got)
	}
	if files := e.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool holds %v", files)
	}
	st, err := e.q.Stats(ctx)
	if err != nil || st.QueuedMessages != 0 {
		t.Errorf("Stats = %+v, %v", st, err)
	}

	for name, op := range map[string]func(context.Context, string) error{
		"Retry": e.q.Retry, "Hold": e.q.Hold, "Release": e.q.Release, "Delete": e.q.Delete, "Bounce": e.q.Bounce,
	} {
		if err := op(ctx, "nosuchmessage"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(unknown) = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := e.q.Get(ctx, "nosuchmessage"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
}

func TestBatchGroupsMessagesByDomain_SMTP11(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 5 {
		e.submit(t, "alice@sender.test", fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("v%d@example.com", i))
	}
	e.submit(t, "alice@sender.test", "x@example.org")
	e.runOnce(t)
	got := map[string][]int{}
	for _, b := range e.fake.Batches() {
		got[b.Domain.String()] = append(got[b.Domain.String()], len(b.Jobs))
	}
	if diff := cmp.Diff(map[string][]int{"example.com": {5}, "example.org": {1}}, got); diff != "" {
		t.Errorf("jobs per batch per domain (-want +got):\n%s", diff)
	}
	for _, b := range e.fake.Batches() {
		for _, j := range b.Jobs {
			if b.Domain.String() == "example.com" && len(j.Recipients) != 2 {
				t.Errorf("job %s has %d recipients, want 2", j.MsgID, len(j.Recipients))
			}
		}
	}
}

func TestConcurrencyLimits(t *testing.T) {
	tests := []struct {
		name          string
		concurrency   int
		perDomain     int
		domains       int
		perDomainMsgs int
		wantDomainMax int
		wantAllMax    int
	}{
		{"PerDomain", 16, 2, 1, 6, 2, 2},
		{"Concurrency", 3, 2, 3, 2, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.Concurrency, o.PerDomain, o.MaxBatch = tt.concurrency, tt.perDomain, 1
			})
			e.fake.gate = make(chan struct{})
			e.fake.started = make(chan Batch, 100)
			for d := range tt.domains {
				for i := range tt.perDomainMsgs {
					e.submit(t, "alice@sender.test", fmt.Sprintf("u%d@d%d.example", i, d))
				}
			}
			done := make(chan error, 1)
			go func() {
				_, err := e.q.RunOnce(context.Background())
				done <- err
			}()
			for range tt.wantAllMax {
				waitFor(t, e.fake.started, "a batch to start")
			}
			close(e.fake.gate)
			if err := waitFor(t, done, "RunOnce"); err != nil {
				t.Fatal(err)
			}
			e.fake.mu.Lock()
			defer e.fake.mu.Unlock()
			top := 0
			for d, m := range e.fake.maxInflight {
				top = max(top, m)
				if m > tt.wantDomainMax {
					t.Errorf("domain %s: %d concurrent batches, want at most %d", d, m, tt.wantDomainMax)
				}
			}
			if top != tt.wantDomainMax {
				t.Errorf("at most %d concurrent batches per domain, want %d reached", top, tt.wantDomainMax)
			}
			if e.fake.maxAll != tt.wantAllMax {
				t.Errorf("%d concurrent batches in all, want %d", e.fake.maxAll, tt.wantAllMax)
			}
			if got, want := len(e.fake.deliveries), tt.domains*tt.perDomainMsgs; got != want {
				t.Errorf("%d deliveries, want %d", got, want)
			}
		})
	}
}

func TestRunDeliversAndShutsDown(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Now = time.Now; o.DrainTimeout = 50 * time.Millisecond })
	e.fake.started = make(chan Batch, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.q.Run(ctx) }()

	e.submit(t, "alice@sender.test", "bob@example.com")
	waitFor(t, e.fake.started, "delivery of a submitted message")

	// A delivery that hangs is cancelled after DrainTimeout; its recipient stays queued.
	e.fake.setGate(make(chan struct{}))
	e.submit(t, "alice@sender.test", "slow@example.net")
	waitFor(t, e.fake.started, "the slow delivery")
	cancel()
	if err := waitFor(t, done, "Run to return"); err != nil {
		t.Errorf("Run = %v", err)
	}
	st, err := e.q.Stats(context.Background())
	if err != nil || st.QueuedRecipients != 1 || st.InFlight != 0 {
		t.Errorf("Stats after shutdown = %+v, %v; want 1 queued, none in flight", st, err)
	}
}
