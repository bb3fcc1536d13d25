package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/store"
)

// The spool directory is fsynced once per group commit (TestSubmitOrder shows it comes after the rename and
// before the commit). A failed directory fsync refuses its whole group: those Submits fail and leave
// neither body nor index row, the others are acknowledged with both.
func TestDirSyncOncePerGroup(t *testing.T) {
	var syncs, failures atomic.Int64
	e := newEnv(t, func(o *Options) {
		o.GroupCommitWindow = 2 * time.Millisecond
		// At most 20 per group: 200 Submits make at least 10 groups, so the second one always exists.
		o.GroupCommitMax = 20
		o.SyncDir = func(string) error {
			if syncs.Add(1) == 2 {
				failures.Add(1)
				return errors.New("injected EIO")
			}
			return nil
		}
	})
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok []string
	failed := 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := e.q.Submit(context.Background(), Envelope{From: address.MustParsePath("a@sender.test"),
				Recipients: []Recipient{{Addr: address.MustParseAddress(fmt.Sprintf("u%d@d%d.example", i, i%7))}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok = append(ok, id)
			case errors.Is(err, ErrTemporary):
				failed++
			default:
				t.Errorf("Submit: %v", err)
			}
		}()
	}
	wg.Wait()
	if failures.Load() != 1 || failed == 0 {
		t.Fatalf("%d injected failures, %d Submits refused; want 1 and some", failures.Load(), failed)
	}
	if got, want := syncs.Load(), e.q.Commits()+1; got != want {
		t.Errorf("%d directory fsyncs for %d group commits (+1 failed), want one per group", got, want-1)
	}
	if s := syncs.Load(); s > n/4 {
		t.Errorf("%d directory fsyncs for %d concurrent Submits, want at most %d", s, n, n/4)
	}
	t.Logf("%d Submits: %d acknowledged, %d refused, %d directory fsyncs, %d commits", n, len(ok), failed, syncs.Load(), e.q.Commits())
	files := e.spoolFiles(t)
	slices.Sort(files)
	slices.Sort(ok)
	if !slices.Equal(files, ok) {
		t.Errorf("spool holds %d bodies, want exactly the %d acknowledged", len(files), len(ok))
	}
	if rows := e.count(t, `SELECT COUNT(*) FROM queue_messages`); rows != len(ok) {
		t.Errorf("%d index rows, want %d (acknowledged)", rows, len(ok))
	}
	checkIndex(t, e, "after the group Submits")
}

// With GroupSync, one file-system flush per group commit covers the bodies too: no body is fsynced alone and
// the spool directory is not fsynced for Submits. The flush comes after every body of the group is written
// and renamed, and before its index rows exist. A failed flush refuses its whole group: those Submits fail
// and leave neither body nor index row (and so do those whose body was being written across it), the others
// are acknowledged with both.
func TestGroupSyncOneFlushPerGroupCoversTheBodies(t *testing.T) {
	requireGroupSync(t)
	var flushes, failures, fileSyncs, dirSyncs atomic.Int64
	var orderErr atomic.Value
	e := newEnv(t, func(o *Options) {
		o.GroupSync = true
		o.GroupCommitWindow = 2 * time.Millisecond
		o.GroupCommitMax = 20
		o.SyncFile = func(*os.File) error { fileSyncs.Add(1); return nil }
		o.SyncDir = func(string) error { dirSyncs.Add(1); return nil }
		o.SyncFS = func(f *os.File) error {
			if f.Name() != o.Dir {
				orderErr.Store(fmt.Sprintf("flush through %s, want the spool directory %s", f.Name(), o.Dir))
			}
			// Every body handed to the committer is renamed into place before the flush: no temporary
			// file may be left of a Submit that is waiting for it.
			ents, _ := os.ReadDir(o.Dir)
			var rows int
			if err := o.DB.QueryRow(`SELECT COUNT(*) FROM queue_messages`).Scan(&rows); err != nil {
				orderErr.Store(err.Error())
			}
			bodies := 0
			for _, en := range ents {
				if !en.IsDir() && validID(en.Name()) {
					bodies++
				}
			}
			if bodies <= rows {
				orderErr.Store(fmt.Sprintf("flush with %d bodies and %d index rows: the group's bodies are not all in place, or its rows already exist", bodies, rows))
			}
			if flushes.Add(1) == 2 {
				failures.Add(1)
				return errors.New("injected EIO")
			}
			return nil
		}
	})
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok []string
	failed := 0
	for i := range n {
		wg.Go(func() {
			id, err := e.q.Submit(context.Background(), Envelope{From: address.MustParsePath("a@sender.test"),
				Recipients: []Recipient{{Addr: address.MustParseAddress(fmt.Sprintf("u%d@d%d.example", i, i%7))}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok = append(ok, id)
			case errors.Is(err, ErrTemporary):
				failed++
			default:
				t.Errorf("Submit: %v", err)
			}
		})
	}
	wg.Wait()
	if v := orderErr.Load(); v != nil {
		t.Error(v)
	}
	if failures.Load() != 1 || failed == 0 {
		t.Fatalf("%d injected failures, %d Submits refused; want 1 and some", failures.Load(), failed)
	}
	// One flush per group: each commit has its own, plus the failed one, plus the groups left without a
	// commit because all their bodies were written across the failed flush (TestGroupSyncWritebackError…).
	if got, min := flushes.Load(), e.q.Commits()+1; got < min || got > n/4 {
		t.Errorf("%d flushes for %d group commits (+1 failed), want one per group (at most %d)", got, min-1, n/4)
	}
	if fileSyncs.Load() != 0 || dirSyncs.Load() != 0 {
		t.Errorf("%d body fsyncs and %d directory fsyncs, want none: the group's flush covers them", fileSyncs.Load(), dirSyncs.Load())
	}
	files := e.spoolFiles(t)
	slices.Sort(files)
	slices.Sort(ok)
	if !slices.Equal(files, ok) {
		t.Errorf("spool holds %d bodies, want exactly the %d acknowledged", len(files), len(ok))
	}
	if rows := e.count(t, `SELECT COUNT(*) FROM queue_messages`); rows != len(ok) {
		t.Errorf("%d index rows, want %d (acknowledged)", rows, len(ok))
	}
	checkIndex(t, e, "after the group Submits")
}

// TestGroupSyncRealFlush: with the real syncfs(2), Submits are acknowledged and their bodies read back.
func TestGroupSyncRealFlush(t *testing.T) {
	requireGroupSync(t)
	e := newEnv(t, func(o *Options) {
		o.GroupSync = true
		o.SyncFS = nil // the real one
	})
	id := e.submit(t, "a@sender.test", "b@example.com")
	if files := e.spoolFiles(t); len(files) != 1 || files[0] != id {
		t.Errorf("spool holds %v, want [%s]", files, id)
	}
}

func TestKernelVersion(t *testing.T) {
	for _, tt := range []struct {
		release      string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v1045", 6, 18, true},
		{"5.8.0", 5, 8, true},
		{"4.19-rc1", 4, 19, true},
		{"5.10+", 5, 10, true},
		{"linux", 0, 0, false},
	} {
		major, minor, ok := kernelVersion(tt.release)
		if major != tt.major || minor != tt.minor || ok != tt.ok {
			t.Errorf("kernelVersion(%q) = %d, %d, %v; want %d, %d, %v", tt.release, major, minor, ok, tt.major, tt.minor, tt.ok)
		}
	}
}

// gatedReader returns first, tells started, waits for release, then returns rest.
type gatedReader struct {
	first, rest string
	started     chan struct{}
	release     chan struct{}
	step        int
}

func (r *gatedReader) Read(p []byte) (int, error) {
	r.step++
	switch r.step {
	case 1:
		close(r.started)
		return copy(p, r.first), nil
	case 2:
		<-r.release
		return copy(p, r.rest), nil
	default:
		return 0, io.EOF
	}
}

// A body's pages can fail to write back while it is still being received, and syncfs reports that error
// once, to whichever group flushes next through the shared spool descriptor: another group is refused, and
// the body's own group flushes with success. Its Submit must not be acknowledged anyway. The stand-in for
// the kernel: the first flush fails (the write-back error of the body being received), later ones succeed.
func TestGroupSyncWritebackErrorOfAnotherGroupNever250(t *testing.T) {
	requireGroupSync(t)
	var flushes atomic.Int64
	e := newEnv(t, func(o *Options) {
		o.GroupSync = true
		o.GroupCommitWindow = -1
		o.SyncFS = func(*os.File) error {
			if flushes.Add(1) == 1 {
				return syscall.EIO
			}
			return nil
		}
	})
	envelope := func(rcpt string) Envelope {
		return Envelope{From: address.MustParsePath("a@sender.test"),
			Recipients: []Recipient{{Addr: address.MustParseAddress(rcpt)}}}
	}
	b := &gatedReader{first: "Subject: b\r\n\r\n", rest: "body of b\r\n", started: make(chan struct{}), release: make(chan struct{})}
	bDone := make(chan error, 1)
	go func() {
		_, err := e.q.Submit(context.Background(), envelope("b@example.com"), b)
		bDone <- err
	}()
	waitFor(t, b.started, "the first read of body B")

	// A's group flushes while B is being received: the write-back error of B's pages is reported there.
	if _, err := e.q.Submit(context.Background(), envelope("a@example.com"), strings.NewReader("Subject: a\r\n\r\na\r\n")); !errors.Is(err, ErrTemporary) {
		t.Fatalf("Submit A = %v, want ErrTemporary (its flush failed)", err)
	}
	close(b.release)
	if err := waitFor(t, bDone, "Submit B"); err == nil {
		t.Fatal("Submit B acknowledged (250), but its pages were lost writing back during the flush of another group")
	} else if !errors.Is(err, ErrTemporary) {
		t.Fatalf("Submit B = %v, want ErrTemporary", err)
	}
	// The next message is not affected.
	c := e.submit(t, "a@sender.test", "c@example.com")
	if files := e.spoolFiles(t); !slices.Equal(files, []string{c}) {
		t.Errorf("spool holds %v, want only the acknowledged [%s]", files, c)
	}
	if rows := e.count(t, `SELECT COUNT(*) FROM queue_messages`); rows != 1 {
		t.Errorf("%d index rows, want 1 (the acknowledged message)", rows)
	}
	if got := flushes.Load(); got != 3 {
		t.Errorf("%d flushes, want 3 (one per group)", got)
	}
}

// requireGroupSync skips where the system has no group sync (not Linux, or Linux before 5.8): Open refuses
// GroupSync there, which TestGroupSyncRefusedWhereUnsupported shows.
func requireGroupSync(t *testing.T) {
	t.Helper()
	if err := GroupSyncSupported(); err != nil {
		t.Skipf("group sync is not available on this system: %v", err)
	}
}

// Where the system has no group sync, Open refuses GroupSync and says what to set instead.
func TestGroupSyncRefusedWhereUnsupported(t *testing.T) {
	if GroupSyncSupported() == nil {
		t.Skip("group sync is available on this system")
	}
	dir := t.TempDir()
	db, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, err = Open(context.Background(), Options{Dir: filepath.Join(dir, "spool"), DB: db, Deliverer: idleDeliverer{}, Hostname: "mx.test", GroupSync: true})
	if err == nil || !strings.Contains(err.Error(), `spool_sync = "file"`) {
		t.Fatalf("Open with GroupSync = %v, want an error naming queue.spool_sync", err)
	}
}
