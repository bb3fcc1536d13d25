package tlsreport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// eachStore runs the contract test f against every Store implementation; open returns a new handle on the
// test's database each time, as another node (or a restarted one) would have.
func eachStore(t *testing.T, f func(t *testing.T, open func(t *testing.T) Store)) {
	t.Run("sqlite", func(t *testing.T) {
		db := storetest.SQLite(t)
		f(t, func(*testing.T) Store { return NewSQLiteStore(db) })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := storetest.PostgresDSN(t)
		f(t, func(t *testing.T) Store { return openPostgresStore(t, dsn) })
	})
}

func openPostgresStore(t *testing.T, dsn string) *PostgresStore {
	t.Helper()
	pg, err := store.OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	return NewPostgresStore(pg)
}

func migrated(t *testing.T, s Store) Store {
	t.Helper()
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Running the migrations again is a no-op.
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func agg(day, domain string, success, failure int64, fs ...FailureCount) Aggregate {
	return Aggregate{Day: day, Domain: domain, PolicyType: tlsrpt.PolicySTS, PolicyString: `["version: STSv1"]`,
		MXHost: `["mx.` + domain + `"]`, Success: success, Failure: failure, Failures: fs}
}

// TestStoreContractAggregates: counts written through two handles add up; a batch with an ID is applied once
// however often it is handed over; held batches come back in order until released.
func TestStoreContractAggregates(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		ctx := t.Context()
		a, b := migrated(t, open(t)), migrated(t, open(t))
		f := FailureCount{ResultType: tlsrpt.ResultCertificateExpired, ReceivingMX: "mx.example.com", ReceivingIP: "192.0.2.1", Count: 2}
		if _, err := a.AddSessions(ctx, Batch{Aggregates: []Aggregate{agg("2024-03-10", "example.com", 5, 2, f)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddSessions(ctx, Batch{Aggregates: []Aggregate{agg("2024-03-10", "example.com", 3, 1, f), agg("2024-03-10", "other.test", 1, 0)}}); err != nil {
			t.Fatal(err)
		}
		hb := Batch{ID: "batch-1", Aggregates: []Aggregate{agg("2024-03-10", "example.com", 10, 0)}}
		for i, want := range []bool{true, false} {
			applied, err := b.AddSessions(ctx, hb)
			if err != nil || applied != want {
				t.Fatalf("hand-over %d: applied = %v, %v; want %v", i, applied, err, want)
			}
		}
		got, err := a.LoadDay(ctx, "2024-03-10", "")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]tlsrpt.PolicyResults{
			"example.com": {{
				Policy:  tlsrpt.Policy{Type: tlsrpt.PolicySTS, String: []string{"version: STSv1"}, Domain: "example.com", MXHost: []string{"mx.example.com"}},
				Summary: tlsrpt.Summary{Successful: 18, Failed: 3},
				FailureDetails: []tlsrpt.FailureDetails{{ResultType: tlsrpt.ResultCertificateExpired, ReceivingMXHostname: "mx.example.com",
					ReceivingIP: "192.0.2.1", FailedSessionCount: 4}},
			}},
			"other.test": {{
				Policy:  tlsrpt.Policy{Type: tlsrpt.PolicySTS, String: []string{"version: STSv1"}, Domain: "other.test", MXHost: []string{"mx.other.test"}},
				Summary: tlsrpt.Summary{Successful: 1},
			}},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("LoadDay (-want +got):\n%s", d)
		}
		if only, err := a.LoadDay(ctx, "2024-03-10", "other.test"); err != nil || len(only) != 1 {
			t.Errorf("LoadDay(other.test) = %v, %v", only, err)
		}

		if err := a.Hold(ctx, Batch{Aggregates: hb.Aggregates}); err == nil {
			t.Error("Hold accepted a batch without an ID")
		}
		for _, id := range []string{"h1", "h2", "h1"} {
			if err := a.Hold(ctx, Batch{ID: id, Aggregates: hb.Aggregates}); err != nil {
				t.Fatal(err)
			}
		}
		held, err := b.Held(ctx)
		if err != nil || len(held) != 2 || held[0].ID != "h1" || held[1].ID != "h2" || cmp.Diff(hb.Aggregates, held[0].Aggregates) != "" {
			t.Fatalf("Held = %+v, %v", held, err)
		}
		if err := b.Release(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		if held, err := a.Held(ctx); err != nil || len(held) != 1 || held[0].ID != "h2" {
			t.Errorf("Held after Release = %+v, %v", held, err)
		}
	})
}

// TestStoreContractReportLog: the first report-id stored wins; a report is marked once; a delivery is leased
// to one sender at a time, only the holder of the lease records its outcome, and a lease that runs out lets
// another sender take the delivery over; pending, suppressions and pruning.
func TestStoreContractReportLog(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		ctx := t.Context()
		a, b := migrated(t, open(t)), migrated(t, open(t))
		now := time.Date(2024, 3, 11, 0, 30, 0, 0, time.UTC)
		if _, err := a.AddSessions(ctx, Batch{Aggregates: []Aggregate{agg("2024-03-10", "example.com", 5, 0), agg("2024-03-09", "old.test", 1, 0)}}); err != nil {
			t.Fatal(err)
		}
		id1, uid1, st, err := a.ReportID(ctx, "2024-03-10", "example.com", "r1@x", "u1", now)
		if err != nil || id1 != "r1@x" || uid1 != "u1" || st != reportBuilt {
			t.Fatalf("ReportID = %q %q %q %v", id1, uid1, st, err)
		}
		if id, uid, _, err := b.ReportID(ctx, "2024-03-10", "example.com", "r2@x", "u2", now); err != nil || id != "r1@x" || uid != "u1" {
			t.Fatalf("second ReportID = %q %q %v, want the first", id, uid, err)
		}
		pend, err := b.Pending(ctx)
		if err != nil || len(pend) != 2 || pend[1].Domain != "example.com" || pend[1].Successful != 5 || pend[1].ReportID != "r1@x" {
			t.Fatalf("Pending = %+v, %v", pend, err)
		}
		mark := ReportMark{Day: "2024-03-10", Domain: "example.com", ReportID: "r1@x", Status: reportSent, Gz: []byte{0x1f, 0x8b, 1},
			Deliveries: []NewDelivery{{"https://a.test/r", StatusPending}, {"mailto:x@s.test", StatusSuppressed}}, Now: now}
		if err := a.MarkReport(ctx, mark); err != nil {
			t.Fatal(err)
		}
		if err := b.MarkReport(ctx, mark); !errors.Is(err, ErrClaimed) {
			t.Fatalf("second MarkReport = %v, want ErrClaimed", err)
		}
		if pend, err := b.Pending(ctx); err != nil || len(pend) != 1 {
			t.Errorf("Pending after mark = %+v, %v", pend, err)
		}
		due, err := b.DueDeliveries(ctx, now, "")
		if err != nil || len(due) != 1 || due[0].Destination != "https://a.test/r" || due[0].UniqueID != "u1" || string(due[0].Gz) != "\x1f\x8b\x01" {
			t.Fatalf("DueDeliveries = %+v, %v", due, err)
		}
		d := due[0]
		lease := 10 * time.Minute
		if ok, err := a.ClaimDelivery(ctx, d.ID, "A", now, now.Add(lease)); err != nil || !ok {
			t.Fatalf("A's claim = %v, %v", ok, err)
		}
		if ok, err := b.ClaimDelivery(ctx, d.ID, "B", now, now.Add(lease)); err != nil || ok {
			t.Fatalf("B's claim while A holds the lease = %v, %v", ok, err)
		}
		if due, err := b.DueDeliveries(ctx, now.Add(lease-time.Second), ""); err != nil || len(due) != 0 {
			t.Fatalf("due during the lease: %+v, %v", due, err)
		}
		// A's lease runs out: B takes over and records success; A's late record is refused.
		later := now.Add(lease)
		if ok, err := b.ClaimDelivery(ctx, d.ID, "B", later, later.Add(lease)); err != nil || !ok {
			t.Fatalf("B's take-over = %v, %v", ok, err)
		}
		rec := func(s Store, owner string, at time.Time) bool {
			ok, err := s.RecordAttempt(ctx, Attempt{ID: d.ID, Owner: owner, Status: StatusDelivered, Attempts: 1,
				FirstAttempt: at, LastAttempt: at})
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !rec(b, "B", later) {
			t.Fatal("B's record refused")
		}
		if rec(a, "A", later.Add(time.Second)) || rec(b, "B", later.Add(time.Second)) {
			t.Fatal("a second record of the same delivery was accepted")
		}
		log, err := a.Deliveries(ctx, "")
		if err != nil || len(log) != 2 {
			t.Fatalf("Deliveries = %+v, %v", log, err)
		}
		if g := log[0]; g.Status != StatusDelivered || g.Attempts != 1 || !g.LastAttempt.Equal(later) || !g.FirstAttempt.Equal(later) || !g.NextAttempt.IsZero() {
			t.Errorf("delivered row = %+v", g)
		}
		if g := log[1]; g.Status != StatusSuppressed || g.Destination != "mailto:x@s.test" || !g.Day.Equal(testDay) {
			t.Errorf("suppressed row = %+v", g)
		}
		if one, err := b.Deliveries(ctx, "r1@x"); err != nil || len(one) != 2 {
			t.Errorf("Deliveries(r1@x) = %+v, %v", one, err)
		}

		if err := a.Suppress(ctx, "x@s.test", "one", now); err != nil {
			t.Fatal(err)
		}
		if err := b.Suppress(ctx, "x@s.test", "two", now); err != nil {
			t.Fatal(err)
		}
		if err := b.Suppress(ctx, "a.test", "", now); err != nil {
			t.Fatal(err)
		}
		sup, err := a.Suppressions(ctx)
		if err != nil || len(sup) != 2 || sup[0].Entry != "a.test" || sup[1].Note != "two" || !sup[1].Added.Equal(now) {
			t.Fatalf("Suppressions = %+v, %v", sup, err)
		}
		if err := a.Unsuppress(ctx, "a.test"); err != nil {
			t.Fatal(err)
		}
		if sup, _ := b.Suppressions(ctx); len(sup) != 1 {
			t.Errorf("after Unsuppress: %+v", sup)
		}

		if err := b.Prune(ctx, "2024-03-10"); err != nil {
			t.Fatal(err)
		}
		if got, err := a.LoadDay(ctx, "2024-03-09", ""); err != nil || len(got) != 0 {
			t.Errorf("pruned day still there: %v, %v", got, err)
		}
		if got, err := a.LoadDay(ctx, "2024-03-10", ""); err != nil || len(got) != 1 {
			t.Errorf("kept day gone: %v, %v", got, err)
		}
		if err := b.Prune(ctx, "2024-03-11"); err != nil {
			t.Fatal(err)
		}
		if log, err := a.Deliveries(ctx, ""); err != nil || len(log) != 0 {
			t.Errorf("report log after pruning its day: %+v, %v", log, err)
		}
	})
}

// TestPostgresStoreRefusesNewerSchema: a database migrated by a newer mxgate is refused, not written to.
func TestPostgresStoreRefusesNewerSchema(t *testing.T) {
	s := openPostgresStore(t, storetest.PostgresDSN(t))
	migrated(t, s)
	if _, err := s.pg.Exec(t.Context(), `UPDATE schema_versions SET version = version + 1 WHERE component = 'tlsreport'`); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err == nil {
		t.Fatal("Migrate accepted a newer schema")
	}
}

// TestPostgresLoadDayOneSnapshot: another node flushes a failure between LoadDay's two reads; the report
// still shows the failure details of the summaries it read (the day as of one moment), not a mix of two.
func TestPostgresLoadDayOneSnapshot(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	a := openPostgresStore(t, dsn)
	b := migrated(t, openPostgresStore(t, dsn))
	migrated(t, a)
	ctx := t.Context()
	f := FailureCount{ResultType: tlsrpt.ResultCertificateExpired, ReceivingMX: "mx.example.com", ReceivingIP: "192.0.2.1", Count: 2}
	if _, err := a.AddSessions(ctx, Batch{Aggregates: []Aggregate{agg("2024-03-10", "example.com", 5, 2, f)}}); err != nil {
		t.Fatal(err)
	}
	var flushErr error
	a.betweenReads = func() {
		f := f
		f.Count = 1
		_, flushErr = b.AddSessions(ctx, Batch{Aggregates: []Aggregate{agg("2024-03-10", "example.com", 0, 1, f)}})
	}
	got, err := a.LoadDay(ctx, "2024-03-10", "example.com")
	if err != nil || flushErr != nil {
		t.Fatal(err, flushErr)
	}
	p := got["example.com"]
	if len(p) != 1 || len(p[0].FailureDetails) != 1 || p[0].FailureDetails[0].FailedSessionCount != p[0].Summary.Failed {
		t.Fatalf("LoadDay = %+v; want the failure details to add up to the failed sessions", p)
	}
}

// TestPruneDropsOldHandoverMarks: a batch's hand-over mark (one per flush) is kept for handoverRetention,
// not for the reports' retention, so a node does not keep a row for every second of the last 30 days; a
// recent mark still stops its batch from being applied twice.
func TestPruneDropsOldHandoverMarks(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		ctx := t.Context()
		s := migrated(t, open(t))
		for _, id := range []string{"old-batch", "new-batch"} {
			if ok, err := s.AddSessions(ctx, Batch{ID: id, Aggregates: []Aggregate{agg("2024-03-10", "example.com", 1, 0)}}); err != nil || !ok {
				t.Fatalf("AddSessions(%s) = %v, %v", id, ok, err)
			}
		}
		sq := sqlOf(t, s)
		if _, err := sq.db.ExecContext(ctx, `UPDATE tlsreport_handovers SET added = ? WHERE id = ?`,
			fmtTime(time.Now().Add(-handoverRetention-time.Hour)), "old-batch"); err != nil {
			t.Fatal(err)
		}
		if err := s.Prune(ctx, Day(time.Now().Add(-30*24*time.Hour)).Format(dayFormat)); err != nil {
			t.Fatal(err)
		}
		var ids []string
		rows, err := sq.db.QueryContext(ctx, `SELECT id FROM tlsreport_handovers ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if diff := cmp.Diff([]string{"new-batch"}, ids); diff != "" {
			t.Errorf("hand-over marks after Prune (-want +got):\n%s", diff)
		}
		if ok, err := s.AddSessions(ctx, Batch{ID: "new-batch", Aggregates: []Aggregate{agg("2024-03-10", "example.com", 1, 0)}}); err != nil || ok {
			t.Errorf("AddSessions(new-batch) again = %v, %v; want not applied", ok, err)
		}
	})
}

// sqlOf returns the SQL store under s, for tests that look at its tables.
func sqlOf(t *testing.T, s Store) sqlStore {
	t.Helper()
	switch v := s.(type) {
	case *SQLiteStore:
		return v.sqlStore
	case *PostgresStore:
		return v.sqlStore
	}
	t.Fatalf("store %T has no SQL tables", s)
	return sqlStore{}
}
