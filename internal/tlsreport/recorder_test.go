package tlsreport

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// hookStore is a Store whose AddSessions calls go through hook, with their number (from 1) and the real call.
type hookStore struct {
	Store
	mu    sync.Mutex
	calls int
	hook  func(ctx context.Context, n int, add func() (bool, error)) (bool, error)
}

func (s *hookStore) AddSessions(ctx context.Context, b Batch) (bool, error) {
	s.mu.Lock()
	s.calls++
	n, hook := s.calls, s.hook
	s.mu.Unlock()
	add := func() (bool, error) { return s.Store.AddSessions(ctx, b) }
	if hook == nil {
		return add()
	}
	return hook(ctx, n, add)
}

func (s *hookStore) setHook(h func(ctx context.Context, n int, add func() (bool, error)) (bool, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

func successes(t *testing.T, st Store) int64 {
	t.Helper()
	got, err := st.LoadDay(t.Context(), testDay.Format(dayFormat), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range got["example.com"] {
		n += p.Summary.Successful
	}
	return n
}

// TestRecorderBatchAppliedOnceWhenReplyLost: the first write of a batch commits but its reply is lost (the
// store answers with a timeout). The batch is written again, held locally and handed over, or retried by
// the next flush; either way its sessions are counted once.
func TestRecorderBatchAppliedOnceWhenReplyLost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		local bool
	}{
		{"shared store with local hold", true},
		{"store alone", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &hookStore{Store: NewSQLiteStore(openDB(t, ""))}
			st.setHook(func(ctx context.Context, n int, add func() (bool, error)) (bool, error) {
				if n == 1 {
					if _, err := add(); err != nil {
						return false, err
					}
					return false, context.DeadlineExceeded
				}
				return add()
			})
			var db *store.DB
			if tc.local {
				db = openDB(t, "")
			}
			rec, err := NewRecorder(t.Context(), db, RecorderOptions{FlushInterval: -1, Store: st})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rec.Close(context.Background()) })
			recordN(rec, 5, success(stsPolicy, testDay.Add(10*time.Hour)))
			err = rec.Flush(t.Context())
			if tc.local && err != nil {
				t.Fatalf("first flush: %v (want the batch held locally)", err)
			}
			if err := rec.Flush(t.Context()); err != nil {
				t.Fatalf("second flush: %v", err)
			}
			if got := successes(t, st.Store); got != 5 {
				t.Errorf("stored %d successful sessions for 5 recorded", got)
			}
			if rec.Held() != 0 {
				t.Errorf("Held = %d, want 0", rec.Held())
			}
			// Nothing is written again by later flushes.
			if err := rec.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := successes(t, st.Store); got != 5 {
				t.Errorf("after another flush: %d successful sessions, want 5", got)
			}
		})
	}
}

// TestRecorderHandOverBounded: while a node hands over the batches it held, the shared store stops answering
// (its AddSessions waits until its context ends). The flush still returns, the batch stays held, and the
// next flush hands it over.
func TestRecorderHandOverBounded(t *testing.T) {
	t.Parallel()
	st := &hookStore{Store: NewSQLiteStore(openDB(t, ""))}
	rec, err := NewRecorder(t.Context(), openDB(t, ""), RecorderOptions{FlushInterval: -1, Store: st,
		SharedTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close(context.Background()) })
	at := testDay.Add(10 * time.Hour)

	st.setHook(func(ctx context.Context, n int, add func() (bool, error)) (bool, error) {
		return false, errors.New("connection refused")
	})
	recordN(rec, 2, success(stsPolicy, at))
	if err := rec.Flush(t.Context()); err != nil || rec.Held() != 1 {
		t.Fatalf("flush with the store down: %v, held %d; want the batch held", err, rec.Held())
	}

	// The store answers the flush's own batch, then stalls on the hand-over (until the test ends, should the
	// flush not give up).
	unstall := make(chan struct{})
	t.Cleanup(func() { close(unstall) })
	st.setHook(func(ctx context.Context, n int, add func() (bool, error)) (bool, error) {
		if n == 2 {
			return add()
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-unstall:
			return false, errors.New("test over")
		}
	})
	recordN(rec, 3, success(stsPolicy, at))
	done := make(chan error, 1)
	go func() { done <- rec.Flush(t.Context()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("flush during a stalled hand-over: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Flush did not return while the store stalled the hand-over")
	}
	if rec.Held() != 1 {
		t.Fatalf("Held = %d after a stalled hand-over, want 1", rec.Held())
	}

	st.setHook(nil)
	if err := rec.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rec.Held() != 0 {
		t.Errorf("Held = %d, want 0", rec.Held())
	}
	if got := successes(t, st.Store); got != 5 {
		t.Errorf("stored %d successful sessions, want 5", got)
	}
}

// stallStore is a Store whose Migrate waits until its context ends.
type stallStore struct{ Store }

func (stallStore) Migrate(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestReporterMigrateBounded: the database does not answer the reporter's first migration; the calls fail
// with the migration's error rather than wait for it (and hold every other call behind it).
func TestReporterMigrateBounded(t *testing.T) {
	t.Parallel()
	rep := &Reporter{Store: stallStore{NewSQLiteStore(openDB(t, ""))}, Contact: mustAddr(contact),
		MigrateTimeout: 100 * time.Millisecond}
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := rep.RetryDue(t.Context())
			done <- err
		}()
	}
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("RetryDue = %v, want the migration's timeout", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("RetryDue did not return while the migration stalled")
		}
	}
}

// TestRecorderJoiningClusterHandsOverOwnAggregates: a node recorded sessions in its own database, reported
// one day and not the next; started on a shared store, it hands over the unreported day's aggregates once
// (a second start adds nothing) and keeps the reported day's to itself.
func TestRecorderJoiningClusterHandsOverOwnAggregates(t *testing.T) {
	t.Parallel()
	db := openDB(t, "")
	reported, open := testDay.AddDate(0, 0, -1), testDay
	solo, err := NewRecorder(t.Context(), db, RecorderOptions{FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	recordN(solo, 4, success(stsPolicy, reported.Add(time.Hour)))
	recordN(solo, 3, success(stsPolicy, open.Add(time.Hour)))
	recordN(solo, 2, failure(stsPolicy, open.Add(time.Hour), tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateExpired}))
	if err := solo.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	own := NewSQLiteStore(db)
	if _, _, _, err := own.ReportID(t.Context(), reported.Format(dayFormat), "example.com", "r1", "u1", open); err != nil {
		t.Fatal(err)
	}
	if err := own.MarkReport(t.Context(), ReportMark{Day: reported.Format(dayFormat), Domain: "example.com",
		ReportID: "r1", Status: reportSent, Now: open}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := own.ReportID(t.Context(), open.Format(dayFormat), "example.com", "r2", "u2", open); err != nil {
		t.Fatal(err)
	}

	shared := migrated(t, NewSQLiteStore(openDB(t, "")))
	for start := 1; start <= 2; start++ {
		rec, err := NewRecorder(t.Context(), db, RecorderOptions{FlushInterval: -1, Store: shared})
		if err != nil {
			t.Fatal(err)
		}
		if err := rec.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if rec.Held() != 0 {
			t.Fatalf("start %d: Held = %d after a flush, want 0", start, rec.Held())
		}
		got, err := shared.LoadDay(t.Context(), open.Format(dayFormat), "")
		if err != nil {
			t.Fatal(err)
		}
		p := got["example.com"]
		if len(p) != 1 || p[0].Summary.Successful != 3 || p[0].Summary.Failed != 2 || len(p[0].FailureDetails) != 1 ||
			p[0].FailureDetails[0].FailedSessionCount != 2 {
			t.Fatalf("start %d: shared aggregates of the unreported day = %+v, want 3 successful and 2 failed", start, p)
		}
		if got, err := shared.LoadDay(t.Context(), reported.Format(dayFormat), ""); err != nil || len(got) != 0 {
			t.Fatalf("start %d: shared aggregates of the reported day = %+v, %v; want none", start, got, err)
		}
	}
	if got, err := own.LoadDay(t.Context(), reported.Format(dayFormat), ""); err != nil || got["example.com"][0].Summary.Successful != 4 {
		t.Errorf("the node's own aggregates of the reported day = %+v, %v; want them kept", got, err)
	}
	if _, id, _, err := own.ReportID(t.Context(), open.Format(dayFormat), "example.com", "r3", "u3", open); err != nil || id != "u3" {
		t.Errorf("the node's own report-id of the unreported day = %q, %v; want it gone", id, err)
	}
}
