package queue

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// recordingHandler keeps every log record, for assertions on level and attributes.
type recordingHandler struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func newRecordingHandler() recordingHandler {
	return recordingHandler{mu: &sync.Mutex{}, recs: &[]slog.Record{}}
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r.Clone())
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

// errorsFor returns the error-level records whose msg_id attribute is id.
func (h recordingHandler) errorsFor(id string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range *h.recs {
		if r.Level != slog.LevelError {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "msg_id" && a.Value.String() == id {
				out = append(out, r)
				return false
			}
			return true
		})
	}
	return out
}

// Truncated, empty, garbage and missing spool entries found at Open are quarantined: the message leaves
// delivery, its body (when there is one) moves to the quarantine directory byte for byte, never deleted,
// each is logged at error level with its msg_id and reason, and counted (Quarantined, Stats). A second
// Open does not count them again, and the good message is delivered as usual.
func TestQuarantineCorruptEntriesNeverDeleted(t *testing.T) {
	logs := newRecordingHandler()
	e := newEnv(t, func(o *Options) { o.Logger = slog.New(logs) })
	ids := map[string]string{}
	for _, kind := range []string{"truncated", "empty", "garbage-longer", "garbage-shorter", "missing", "directory", "good"} {
		ids[kind] = e.submit(t, "alice@sender.test", kind+"@example.com")
	}
	e.q.Close()

	dir := e.opts.Dir
	path := func(kind string) string { return filepath.Join(dir, ids[kind]) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	garbage := bytes.Repeat([]byte{0x00, 0xff, 0x1b, '\r'}, 300)
	must(os.Truncate(path("truncated"), 7))
	must(os.Truncate(path("empty"), 0))
	must(os.WriteFile(path("garbage-longer"), garbage, 0o600))
	must(os.WriteFile(path("garbage-shorter"), garbage[:9], 0o600))
	must(os.Remove(path("missing")))
	must(os.Remove(path("directory")))
	must(os.Mkdir(path("directory"), 0o700))
	// What each entry holds now; quarantine must keep exactly this.
	want := map[string][]byte{}
	for _, kind := range []string{"truncated", "empty", "garbage-longer", "garbage-shorter"} {
		b, err := os.ReadFile(path(kind))
		must(err)
		want[kind] = b
	}

	e.open(t)
	const bad = 6
	if got := e.q.Quarantined(); got != bad {
		t.Errorf("Quarantined() = %d, want %d", got, bad)
	}
	st, err := e.q.Stats(context.Background())
	must(err)
	if st.Quarantined != bad {
		t.Errorf("Stats().Quarantined = %d, want %d", st.Quarantined, bad)
	}
	qdir := filepath.Join(dir, "quarantine")
	for kind, content := range want {
		got, err := os.ReadFile(filepath.Join(qdir, ids[kind]))
		if err != nil {
			t.Errorf("%s: body not in quarantine: %v", kind, err)
			continue
		}
		if !bytes.Equal(got, content) {
			t.Errorf("%s: quarantined body changed: %d octets, want %d", kind, len(got), len(content))
		}
	}
	if fi, err := os.Stat(filepath.Join(qdir, ids["directory"])); err != nil || !fi.IsDir() {
		t.Errorf("directory in place of a body not moved to quarantine: %v", err)
	}
	for kind, id := range ids {
		if kind == "good" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, id)); !os.IsNotExist(err) {
			t.Errorf("%s: still in the spool (%v)", kind, err)
		}
		recs := logs.errorsFor(id)
		if len(recs) != 1 {
			t.Errorf("%s: %d error-level log records, want 1", kind, len(recs))
		}
		d, err := e.q.Get(context.Background(), id)
		if err != nil {
			t.Errorf("%s: index entry gone: %v", kind, err)
			continue
		}
		if d.State != stateQuarantined || d.QuarantineReason == "" {
			t.Errorf("%s: state %q reason %q, want quarantined with a reason", kind, d.State, d.QuarantineReason)
		}
		t.Logf("%s: %s", kind, d.QuarantineReason)
	}
	e.runOnce(t)
	if ds := e.fake.Deliveries(); len(ds) != 1 || ds[0].Job.MsgID != ids["good"] {
		t.Errorf("deliveries %+v, want only the good message", ds)
	}

	// Reopen: nothing new to quarantine, nothing lost from the quarantine directory.
	e.q.Close()
	e.open(t)
	if got := e.q.Quarantined(); got != 0 {
		t.Errorf("after reopen Quarantined() = %d, want 0 (already quarantined)", got)
	}
	for kind := range want {
		if _, err := os.Stat(filepath.Join(qdir, ids[kind])); err != nil {
			t.Errorf("%s: quarantined body gone after reopen: %v", kind, err)
		}
	}
	list, err := e.q.List(context.Background(), Filter{State: stateQuarantined})
	if err != nil || len(list) != bad {
		t.Errorf("List(quarantined) = %d messages, %v; want %d", len(list), err, bad)
	}
}
