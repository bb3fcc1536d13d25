package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
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
