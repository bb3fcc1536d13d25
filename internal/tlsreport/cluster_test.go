package tlsreport

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// node is one gateway of a cluster test: its own SQLite database, its recorder and its reporter, on the
// store the cluster shares.
type node struct {
	rec *Recorder
	rep *Reporter
}

// cluster is n nodes sharing one store (open returns a handle on it), a test DNS server with the TLSRPT record
// of example.com pointing at one HTTPS sink, and one clock.
type cluster struct {
	nodes []node
	sink  *sink
	clock *clocktest.Clock
}

func newCluster(t *testing.T, n int, open func(t *testing.T) Store) *cluster {
	t.Helper()
	return newClusterRUA(t, n, open, "https://reports.test/r")
}

// newClusterRUA is newCluster with example.com's rua (destinations on host reports.test).
func newClusterRUA(t *testing.T, n int, open func(t *testing.T) Store, rua string) *cluster {
	t.Helper()
	c := &cluster{sink: newSink(t, 201), clock: clocktest.New(testDay.Add(9 * time.Hour))}
	dns := dnstest.New(t)
	dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=` + rua + `"`)
	for i := 0; i < n; i++ {
		st := open(t)
		rec, err := NewRecorder(t.Context(), openDB(t, ""), RecorderOptions{Now: c.clock.Now, FlushInterval: -1, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rec.Close(context.Background()) })
		c.nodes = append(c.nodes, node{rec: rec, rep: &Reporter{
			Store:    st,
			Resolver: dns.Client(),
			HTTP:     c.sink.client,
			Recorder: rec,
			Now:      c.clock.Now,
			Org:      "Sender Org",
			Contact:  mustAddr(contact),
		}})
	}
	return c
}

func (c *cluster) flushAll(t *testing.T) {
	t.Helper()
	for _, n := range c.nodes {
		if err := n.rec.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func reportOf(t *testing.T, body []byte) tlsrpt.Report {
	t.Helper()
	var r tlsrpt.Report
	if err := json.Unmarshal(gunzip(t, body), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestClusterOneReportFromEveryNode: three nodes record sessions for the same Policy Domain and day; all
// three try to send the day's reports at once; exactly one report is sent, and it counts the sessions of all
// three.
func TestClusterOneReportFromEveryNode(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		c := newCluster(t, 3, open)
		at := testDay.Add(10 * time.Hour)
		for i, n := range c.nodes {
			recordN(n.rec, i+1, success(stsPolicy, at))
			recordN(n.rec, 1, failure(stsPolicy, at, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateExpired,
				ReceivingMXHostname: "mx1.example.com", ReceivingIP: "192.0.2.25"}))
		}
		c.flushAll(t)
		c.clock.Set(sendTime)
		var wg sync.WaitGroup
		results := make([]SendResult, len(c.nodes))
		errs := make([]error, len(c.nodes))
		for i, n := range c.nodes {
			wg.Go(func() { results[i], errs[i] = n.rep.SendDay(t.Context(), testDay) })
		}
		wg.Wait()
		sent := 0
		for i := range c.nodes {
			if errs[i] != nil {
				t.Fatalf("node %d: %v", i+1, errs[i])
			}
			for _, d := range results[i].Domains {
				switch d.Status {
				case reportSent:
					sent++
				case "already-handled":
				default:
					t.Errorf("node %d: %s: %s %s", i+1, d.Domain, d.Status, d.Detail)
				}
			}
		}
		reqs := c.sink.got()
		if sent != 1 || len(reqs) != 1 {
			t.Fatalf("%d nodes sent the report, %d POSTs; want 1 and 1", sent, len(reqs))
		}
		r := reportOf(t, reqs[0].body)
		if len(r.Policies) != 1 || r.Policies[0].Summary.Successful != 6 || r.Policies[0].Summary.Failed != 3 ||
			len(r.Policies[0].FailureDetails) != 1 || r.Policies[0].FailureDetails[0].FailedSessionCount != 3 {
			t.Errorf("report = %+v, want 6 successful and 3 failed sessions (1+2+3, 1+1+1)", r.Policies)
		}
		log, err := c.nodes[2].rep.Sent(t.Context())
		if err != nil || len(log) != 1 || log[0].Status != StatusDelivered || log[0].Attempts != 1 || log[0].ReportID != r.ReportID {
			t.Errorf("report log = %+v, %v", log, err)
		}
	})
}

// TestClusterSenderDiesMidSend: node 1 leases the delivery and dies while its POST is in flight (its context
// is cancelled: no outcome is recorded). Node 2 leaves the delivery alone while the lease runs, then takes it
// over, sends the same report (same report-id) and records the one success.
func TestClusterSenderDiesMidSend(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		c := newCluster(t, 2, open)
		recordStandardDay(c.nodes[0].rec)
		c.flushAll(t)
		inFlight := make(chan struct{})
		c.sink.mu.Lock()
		c.sink.hook = func(n int, ctx context.Context) {
			if n == 1 {
				close(inFlight)
				<-ctx.Done() // until the sender is gone
			}
		}
		c.sink.mu.Unlock()
		c.clock.Set(sendTime)
		ctx, kill := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := c.nodes[0].rep.SendDay(ctx, testDay)
			done <- err
		}()
		<-inFlight
		kill()
		if err := <-done; err == nil {
			t.Fatal("node 1's SendDay succeeded after it was killed")
		}
		n2 := c.nodes[1].rep
		if n, err := n2.RetryDue(t.Context()); err != nil || n != 0 {
			t.Fatalf("node 2 during node 1's lease: %d attempts, %v; want 0", n, err)
		}
		if res, err := n2.SendDay(t.Context(), testDay); err != nil || statuses(res)["example.com"] != "already-handled" {
			t.Fatalf("node 2 SendDay = %+v, %v", res, err)
		}
		c.clock.Advance(sendLease)
		if n, err := n2.RetryDue(t.Context()); err != nil || n != 1 {
			t.Fatalf("node 2 after the lease: %d attempts, %v; want 1", n, err)
		}
		reqs := c.sink.got()
		if len(reqs) != 2 || reportOf(t, reqs[0].body).ReportID != reportOf(t, reqs[1].body).ReportID {
			t.Fatalf("%d POSTs; want 2 of the same report", len(reqs))
		}
		log, err := n2.Sent(t.Context())
		if err != nil || len(log) != 1 || log[0].Status != StatusDelivered || log[0].Attempts != 1 || !log[0].LastAttempt.Equal(sendTime.Add(sendLease)) {
			t.Fatalf("report log = %+v, %v", log, err)
		}
	})
}

// TestClusterStalledSenderRecordsNothing: node 1's POST hangs past its lease; node 2 takes the delivery over
// and records it delivered; when node 1's POST finally succeeds, its outcome is not recorded: one success per
// report and destination.
func TestClusterStalledSenderRecordsNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		c := newCluster(t, 2, open)
		recordStandardDay(c.nodes[0].rec)
		c.flushAll(t)
		inFlight, release := make(chan struct{}), make(chan struct{})
		c.sink.mu.Lock()
		c.sink.hook = func(n int, ctx context.Context) {
			if n == 1 {
				close(inFlight)
				<-release
			}
		}
		c.sink.mu.Unlock()
		c.clock.Set(sendTime)
		done := make(chan error, 1)
		go func() {
			_, err := c.nodes[0].rep.SendDay(t.Context(), testDay)
			done <- err
		}()
		<-inFlight
		c.clock.Advance(sendLease)
		n2 := c.nodes[1].rep
		if n, err := n2.RetryDue(t.Context()); err != nil || n != 1 {
			t.Fatalf("node 2 after node 1's lease: %d attempts, %v; want 1", n, err)
		}
		c.clock.Advance(time.Minute)
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		log, err := n2.Sent(t.Context())
		if err != nil || len(log) != 1 || log[0].Status != StatusDelivered || log[0].Attempts != 1 || !log[0].LastAttempt.Equal(sendTime.Add(sendLease)) {
			t.Fatalf("report log = %+v, %v; want node 2's one delivery", log, err)
		}
		if n, err := n2.RetryDue(t.Context()); err != nil || n != 0 {
			t.Errorf("a delivered report is due again: %d, %v", n, err)
		}
	})
}

// TestRecorderHoldsSessionsWhileSharedStoreDown: with the shared PostgreSQL database unreachable, a node's
// flushes keep the sessions in its own database; a node restarted meanwhile still knows them; when the
// database answers again they are handed over once, and the report counts every session.
func TestRecorderHoldsSessionsWhileSharedStoreDown(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	shared := migrated(t, openPostgresStore(t, dsn))
	local := openDB(t, "")
	clock := clocktest.New(testDay.Add(9 * time.Hour))
	// The node's handle on the shared store (a pool that reconnects once the server answers again).
	pgs := openPostgresStore(t, dsn)
	newRec := func() *Recorder {
		rec, err := NewRecorder(t.Context(), local, RecorderOptions{Now: clock.Now, FlushInterval: -1, Store: pgs})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	rec := newRec()
	at := testDay.Add(10 * time.Hour)
	recordN(rec, 2, success(stsPolicy, at))
	if err := rec.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}

	restore := storetest.CutOff(t, dsn)
	recordN(rec, 3, success(stsPolicy, at))
	if err := rec.Flush(t.Context()); err != nil {
		t.Fatalf("flush with the shared store down: %v (want the sessions kept locally)", err)
	}
	if rec.Held() != 1 {
		t.Fatalf("Held = %d, want 1", rec.Held())
	}
	// The node restarts while the database is down: what it held is still there, and it starts.
	if err := rec.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec = newRec()
	t.Cleanup(func() { rec.Close(context.Background()) })
	if rec.Held() != 1 {
		t.Fatalf("Held after restart = %d, want 1", rec.Held())
	}
	recordN(rec, 4, failure(stsPolicy, at, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateExpired}))
	if err := rec.Flush(t.Context()); err != nil || rec.Held() != 2 {
		t.Fatalf("second flush while down: %v, held %d", err, rec.Held())
	}

	restore()
	if err := rec.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rec.Held() != 0 {
		t.Fatalf("Held after the database returned = %d, want 0", rec.Held())
	}
	got, err := shared.LoadDay(t.Context(), testDay.Format(dayFormat), "")
	if err != nil {
		t.Fatal(err)
	}
	if p := got["example.com"]; len(p) != 1 || p[0].Summary.Successful != 5 || p[0].Summary.Failed != 4 {
		t.Fatalf("shared aggregates = %+v, want 5 successful and 4 failed", got)
	}
	// Another flush hands nothing over twice.
	if err := rec.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := shared.LoadDay(t.Context(), testDay.Format(dayFormat), ""); got["example.com"][0].Summary.Successful != 5 {
		t.Fatalf("counts changed on a later flush: %+v", got)
	}
}

// TestClusterLeaseCountsFromTheClaim: node 1 sends a report to two destinations and its first POST takes
// longer than a lease. The second delivery's lease still runs from when node 1 claims it, so node 2, looking
// for due deliveries while that POST is in flight, leaves it alone: one POST per destination.
func TestClusterLeaseCountsFromTheClaim(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) Store) {
		c := newClusterRUA(t, 2, open, "https://reports.test/a,https://reports.test/b")
		recordStandardDay(c.nodes[0].rec)
		c.flushAll(t)
		inSecond, release := make(chan struct{}), make(chan struct{})
		c.sink.mu.Lock()
		c.sink.hook = func(n int, ctx context.Context) {
			switch n {
			case 1:
				c.clock.Advance(sendLease + time.Minute) // a slow first POST
			case 2:
				close(inSecond)
				<-release
			}
		}
		c.sink.mu.Unlock()
		c.clock.Set(sendTime)
		done := make(chan error, 1)
		go func() {
			_, err := c.nodes[0].rep.SendDay(t.Context(), testDay)
			done <- err
		}()
		<-inSecond
		n, err := c.nodes[1].rep.RetryDue(t.Context())
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err != nil || n != 0 {
			t.Errorf("node 2 during node 1's second POST: %d attempts, %v; want 0", n, err)
		}
		if reqs := c.sink.got(); len(reqs) != 2 {
			t.Errorf("%d POSTs for 2 destinations; want 2", len(reqs))
		}
	})
}

// TestClusterSwitchFinishesPendingDeliveries: a node that ran on its own database and had a report delivery
// retrying there when it switched to the shared PostgreSQL store finishes that delivery from its own
// database, with the same bytes, once; a later start (another switch, interrupted or not) sends it no more.
// The delivery is not copied into the shared store, so no other node sends it too.
func TestClusterSwitchFinishesPendingDeliveries(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	e := newEnv(t)
	s := newSink(t, 500, 201)
	e.rep.HTTP = s.client
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=https://reports.test/r"`)
	recordStandardDay(e.rec)
	res := sendDay(t, e)
	if d := res.Domains[0].Deliveries; len(d) != 1 || d[0].Status != StatusRetrying {
		t.Fatalf("on its own database: %+v, want one delivery retrying", d)
	}
	if err := e.rec.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	// The node restarts in cluster mode, on the same state.db, as the daemon builds it.
	start := func() (*Reporter, Store) {
		shared := openPostgresStore(t, dsn)
		rec, err := NewRecorder(t.Context(), e.db, RecorderOptions{Now: e.clock.Now, FlushInterval: -1, Store: shared})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rec.Close(context.Background()) })
		return &Reporter{Store: shared, Local: NewSQLiteStore(e.db), Resolver: e.dns.Client(), HTTP: s.client,
			Recorder: rec, Now: e.clock.Now, Org: "Sender Org", Contact: mustAddr(contact)}, shared
	}
	rep, shared := start()
	e.clock.Advance(5 * time.Minute)
	if n, err := rep.RetryDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("RetryDue after the switch = %d, %v; want the retrying delivery attempted", n, err)
	}
	reqs := s.got()
	if len(reqs) != 2 || !bytes.Equal(reqs[0].body, reqs[1].body) {
		t.Fatalf("%d POSTs after the switch, want 2 with the same report", len(reqs))
	}
	local, err := NewSQLiteStore(e.db).Deliveries(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(local) != 1 || local[0].Status != StatusDelivered || local[0].Attempts != 2 {
		t.Errorf("the node's own report log = %+v, want the delivery delivered after 2 attempts", local)
	}
	if got, err := shared.Deliveries(t.Context(), ""); err != nil || len(got) != 0 {
		t.Errorf("shared report log = %+v, %v; want nothing of the node's own report", got, err)
	}

	rep, _ = start()
	e.clock.Advance(25 * time.Hour)
	if n, err := rep.RetryDue(t.Context()); err != nil || n != 0 {
		t.Errorf("RetryDue after another start = %d, %v; want nothing left to send", n, err)
	}
	if got := len(s.got()); got != 2 {
		t.Errorf("%d POSTs in all, want 2 (no duplicate)", got)
	}
}
