package queue

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// readingDeliverer reads each body to its end, as a DATA transfer does, reports Delivered only when the
// read succeeded (a Deliverer sends the final dot only then), and keeps the read errors.
type readingDeliverer struct {
	mu   sync.Mutex
	errs []error
	jobs int
}

func (d *readingDeliverer) Deliver(ctx context.Context, b Batch) []Result {
	var out []Result
	for _, j := range b.Jobs {
		d.mu.Lock()
		d.jobs++
		d.mu.Unlock()
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
			d.mu.Lock()
			d.errs = append(d.errs, err)
			d.mu.Unlock()
			res = Result{Outcome: Deferred, Code: 451, Enhanced: "4.3.0", Text: err.Error()}
		}
		for _, r := range j.Recipients {
			res.MsgID, res.Rcpt = j.MsgID, r.Addr
			out = append(out, res)
		}
	}
	return out
}

// A spool body changed after acceptance, even to the same size, is caught while it is streamed: the read
// fails at its end with ErrBodyCorrupt instead of io.EOF (before the final dot), nothing is recorded as
// delivered, and the message is quarantined with its body, never to be tried again.
func TestCorruptBodyQuarantinedNotDelivered(t *testing.T) {
	d := &readingDeliverer{}
	e := newEnv(t, func(o *Options) { o.Deliverer = d })
	good := e.submit(t, "alice@sender.test", "bob@example.com")
	bad := e.submit(t, "alice@sender.test", "carol@example.com", "dave@example.org")
	path := filepath.Join(e.opts.Dir, bad)
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(body), "Hello")
	body[i] = 'J' // same size, one octet changed
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t)

	if len(d.errs) == 0 {
		t.Fatal("the corrupt body was read without an error")
	}
	for _, err := range d.errs {
		if !errors.Is(err, ErrBodyCorrupt) {
			t.Errorf("read error %v does not wrap ErrBodyCorrupt", err)
		}
	}
	det, err := e.q.Get(context.Background(), bad)
	if err != nil {
		t.Fatal(err)
	}
	if det.State != stateQuarantined || !strings.Contains(det.QuarantineReason, "checksum") {
		t.Errorf("corrupt message: state %q, quarantine reason %q; want quarantined for its checksum", det.State, det.QuarantineReason)
	}
	for _, r := range det.Rcpts {
		if r.State != stateQuarantined {
			t.Errorf("recipient %s is %s, want quarantined", r.Addr, r.State)
		}
	}
	if _, err := os.Stat(filepath.Join(e.q.opts.QuarantineDir, bad)); err != nil {
		t.Errorf("corrupt body not in the quarantine directory: %v", err)
	}
	if _, err := e.q.Get(context.Background(), good); !errors.Is(err, ErrNotFound) {
		t.Errorf("the intact message: %v, want delivered and gone", err)
	}
	if e.q.Quarantined() != 1 {
		t.Errorf("Quarantined() = %d, want 1", e.q.Quarantined())
	}
	// Never tried again.
	jobs := d.jobs
	e.runOnce(t)
	if d.jobs != jobs {
		t.Errorf("the quarantined message was handed to delivery again")
	}
}
