package queue

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/store"
)

// idleDeliverer is never called: the benchmark does not run the scheduler.
type idleDeliverer struct{}

func (idleDeliverer) Deliver(context.Context, Batch) []Result { return nil }

// BenchmarkSubmit measures Submit with real fsyncs (body file, spool directory, SQLite WAL commit) on
// b.TempDir(): one submitter at a time, then b.RunParallel with 8 submitters per CPU, where group commit
// shares the index commit; and parallel with GroupSync (one syncfs per group, then an fdatasync per body).
// commits/op reports index transactions per message.
func BenchmarkSubmit(b *testing.B) {
	body := []byte("From: a@sender.example\r\nTo: b@example.com\r\nSubject: x\r\n\r\n" +
		strings.Repeat("The quick brown fox jumps over the lazy dog 0123456789.\r\n", 36))
	open := func(b *testing.B, groupSync bool) *Queue {
		b.Helper()
		dir := b.TempDir()
		db, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		q, err := Open(context.Background(), Options{Dir: filepath.Join(dir, "spool"), DB: db, Deliverer: idleDeliverer{},
			Hostname: "gw.example.net", GroupSync: groupSync})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { q.Close() })
		return q
	}
	env := func(i int64) Envelope {
		return Envelope{From: address.MustParsePath("a@sender.example"), Recipients: []Recipient{{Addr: address.MustParseAddress(fmt.Sprintf("u%d@d%d.example.com", i, i%50))}}}
	}
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		q := open(b, false)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		var i int64
		for b.Loop() {
			i++
			if _, err := q.Submit(ctx, env(i), bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(q.Commits())/float64(i), "commits/op")
	})
	parallel := func(b *testing.B, groupSync bool) {
		q := open(b, groupSync)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		b.SetParallelism(8)
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := q.Submit(ctx, env(n.Add(1)), bytes.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(q.Commits())/float64(max(1, n.Load())), "commits/op")
	}
	b.Run("parallel", func(b *testing.B) { parallel(b, false) })
	b.Run("parallel-group", func(b *testing.B) { parallel(b, true) })
}
