package tlsreport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// BenchmarkRecord is the delivery hot path: one session result into the in-memory aggregate.
func BenchmarkRecord(b *testing.B) {
	db := openDB(b, "")
	rec, err := NewRecorder(context.Background(), db, RecorderOptions{FlushInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Close(context.Background())
	at := testDay.Add(10 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%10 == 0 {
			rec.Record(failure(stsPolicy, at, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateExpired, ReceivingMXHostname: "mx1.example.com", ReceivingIP: "192.0.2.11"}))
		} else {
			rec.Record(success(stsPolicy, at))
		}
	}
}

// BenchmarkBuildReports builds one UTC day's reports for 50 policy domains with successes and failures
// recorded (the JSON each domain will receive, before gzip and sending).
func BenchmarkBuildReports(b *testing.B) {
	db := openDB(b, "")
	rec, err := NewRecorder(context.Background(), db, RecorderOptions{FlushInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Close(context.Background())
	at := testDay.Add(10 * time.Hour)
	for d := range 50 {
		p := stsPolicy
		p.Domain = fmt.Sprintf("d%02d.example", d)
		recordN(rec, 20, success(p, at))
		recordN(rec, 2, failure(p, at, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateHostMismatch, ReceivingMXHostname: "mx." + p.Domain, ReceivingIP: "192.0.2.1"}))
	}
	if err := rec.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	clock := clocktest.New(testDay.Add(30 * time.Hour))
	rep := &Reporter{DB: db, Recorder: rec, Now: clock.Now, Org: "Sender Org", Contact: mustAddr(contact)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		pend, err := rep.BuildReports(context.Background(), testDay)
		if err != nil || len(pend) != 50 {
			b.Fatalf("BuildReports = %d reports, %v", len(pend), err)
		}
	}
}

// BenchmarkFlush writes one second's worth of a busy node's sessions (50 policy domains, successes and
// failures) from memory to the store: the background flush.
func BenchmarkFlush(b *testing.B) {
	db := openDB(b, "")
	rec, err := NewRecorder(context.Background(), db, RecorderOptions{FlushInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Close(context.Background())
	at := testDay.Add(10 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for d := range 50 {
			p := stsPolicy
			p.Domain = fmt.Sprintf("d%02d.example", d)
			recordN(rec, 20, success(p, at))
			recordN(rec, 2, failure(p, at, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateHostMismatch, ReceivingMXHostname: "mx." + p.Domain, ReceivingIP: "192.0.2.1"}))
		}
		if err := rec.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
