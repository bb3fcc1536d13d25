package tracking_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/store"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/tracking"
)

func openStore(t *testing.T) tracking.Store {
	t.Helper()
	pg, err := store.OpenPostgres(context.Background(), storetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	s := tracking.Store{PG: pg}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func msg(id, mid, from string, finished time.Time, rcpts ...string) queue.Traced {
	m := queue.Traced{ID: id, MessageID: mid, From: from, Size: 100, Received: finished.Add(-time.Minute), Finished: finished}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, queue.RecipientInfo{Addr: r, State: "delivered", Attempts: 1})
		m.Attempts = append(m.Attempts, queue.Attempt{Rcpt: r, At: finished, Outcome: queue.Delivered, Code: 250})
	}
	return m
}

// TestStoreFindsEveryNodesMessages: messages put by two nodes are found by queue ID, Message-ID (any case,
// with or without <>), sender and recipient, each with its node, newest first; a batch put twice (a
// hand-over whose reply was lost) is stored once; Prune drops what finished before the cutoff.
func TestStoreFindsEveryNodesMessages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t)
	now := time.Unix(1_800_000_000, 0)
	a1 := msg("A1", "<One@example.org>", "alice@example.org", now.Add(-2*time.Hour), "bob@example.com", "carol@example.net")
	b1 := msg("B1", "<two@example.org>", "alice@example.org", now.Add(-time.Hour), "Dave@example.com")
	old := msg("B0", "<old@example.org>", "zed@example.org", now.Add(-10*24*time.Hour), "bob@example.com")
	for range 2 {
		if err := s.Put(ctx, "a.example.net", []queue.Traced{a1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "b.example.net", []queue.Traced{b1, old}); err != nil {
		t.Fatal(err)
	}
	find := func(tq queue.TraceQuery) []string {
		t.Helper()
		got, err := s.Trace(ctx, tq)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range got {
			out = append(out, m.Node+"/"+m.ID)
		}
		return out
	}
	for _, tt := range []struct {
		q    queue.TraceQuery
		want string
	}{
		{queue.TraceQuery{Any: "alice@example.org"}, "[b.example.net/B1 a.example.net/A1]"},
		{queue.TraceQuery{Any: "one@EXAMPLE.org"}, "[a.example.net/A1]"},
		{queue.TraceQuery{MessageID: "<two@example.org>"}, "[b.example.net/B1]"},
		{queue.TraceQuery{Recipient: "dave@example.com"}, "[b.example.net/B1]"},
		{queue.TraceQuery{Any: "bob@example.com"}, "[a.example.net/A1 b.example.net/B0]"},
		{queue.TraceQuery{ID: "A1", Sender: "alice@example.org"}, "[a.example.net/A1]"},
		{queue.TraceQuery{Any: "bob@example.com", Limit: 1}, "[a.example.net/A1]"},
	} {
		if got := find(tt.q); fmtList(got) != tt.want {
			t.Errorf("trace %+v = %v, want %s", tt.q, got, tt.want)
		}
	}
	got, err := s.Trace(ctx, queue.TraceQuery{ID: "A1"})
	if err != nil || len(got) != 1 || len(got[0].Recipients) != 2 || len(got[0].Attempts) != 2 || !got[0].Finished.Equal(a1.Finished) {
		t.Errorf("A1 = %+v, %v; want its two recipients and attempts, once", got, err)
	}
	if _, err := s.Trace(ctx, queue.TraceQuery{}); err != queue.ErrBadQuery {
		t.Errorf("empty query: %v, want ErrBadQuery", err)
	}
	if n, err := s.Prune(ctx, now.Add(-7*24*time.Hour), 100); err != nil || n != 1 {
		t.Errorf("prune = %d, %v; want the 10-day-old message", n, err)
	}
	if got := find(queue.TraceQuery{Any: "bob@example.com"}); fmtList(got) != "[a.example.net/A1]" {
		t.Errorf("after the prune: %v", got)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}

// TestMergeKeepsEachMessageOnce: a message of this node found in the shared table and in its archive is
// listed once; this node's archive-only messages are named with its node; newest first, within the limit.
func TestMergeKeepsEachMessageOnce(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	shared := []queue.Traced{{Node: "a", ID: "1", Finished: now}, {Node: "b", ID: "2", Finished: now.Add(-time.Hour)}}
	local := []queue.Traced{{ID: "1", Finished: now}, {ID: "3", Finished: now.Add(time.Minute)}}
	var got []string
	for _, m := range tracking.Merge("a", shared, local, 10) {
		got = append(got, m.Node+"/"+m.ID)
	}
	if fmtList(got) != "[a/3 a/1 b/2]" {
		t.Errorf("merged = %v", got)
	}
	if n := len(tracking.Merge("a", shared, local, 2)); n != 2 {
		t.Errorf("limit 2: %d messages", n)
	}
}

// memOutbox is a node's tracking outbox held in memory.
type memOutbox struct {
	mu      sync.Mutex
	entries []queue.Archived
}

func (o *memOutbox) Outbox(_ context.Context, limit int) ([]queue.Archived, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.entries[:min(limit, len(o.entries))]), nil
}

func (o *memOutbox) DoneOutbox(_ context.Context, seq int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.entries = slices.DeleteFunc(o.entries, func(a queue.Archived) bool { return a.Seq <= seq })
	return nil
}

func (o *memOutbox) OutboxBacklog(context.Context) (int, time.Time, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries), time.Time{}, nil
}

// TestPublisherHandsOverManyRecipients: a burst of messages with many recipients each (200 of 150) is
// handed over within a tight per-batch timeout, in a bounded number of rounds, every recipient findable;
// an outbox entry whose message the archive already pruned is skipped, not stuck.
func TestPublisherHandsOverManyRecipients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t)
	node := fmt.Sprintf("burst-%d.example.net", time.Now().UnixNano())
	now := time.Unix(1_800_000_000, 0)
	ob := &memOutbox{}
	for i := range 200 {
		rcpts := make([]string, 150)
		for j := range rcpts {
			rcpts[j] = fmt.Sprintf("r%d-%d@example.com", i, j)
		}
		ob.entries = append(ob.entries, queue.Archived{Seq: int64(2*i + 1), Traced: msg(fmt.Sprintf("M%d", i), "", "bulk@example.org", now, rcpts...)})
		if i == 100 {
			ob.entries = append(ob.entries, queue.Archived{Seq: int64(2*i + 2)}) // pruned from the archive
		}
	}
	p := &tracking.Publisher{Store: s, Outbox: ob, Node: node, Now: func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler), Every: time.Second, Timeout: 2 * time.Second}
	var err error
	for range 10 {
		if err = p.Round(ctx); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("not handed over after 10 rounds: %v", err)
	}
	if n, _, _ := ob.OutboxBacklog(ctx); n != 0 {
		t.Errorf("%d entries left in the outbox", n)
	}
	var n int
	if err := s.PG.QueryRow(ctx, `SELECT count(*) FROM tracking_recipients WHERE node = $1`, node).Scan(&n); err != nil || n != 200*150 {
		t.Errorf("shared table holds %d recipients (%v), want %d", n, err, 200*150)
	}
	got, err := s.Trace(ctx, queue.TraceQuery{Recipient: "r199-149@example.com"})
	if err != nil || len(got) != 1 || got[0].ID != "M199" || got[0].Node != node {
		t.Errorf("last recipient: %+v, %v", got, err)
	}
}

// TestPublisherPrunesInChunks: a backlog of expired messages larger than a prune chunk is pruned in one
// round, chunk by chunk, recipients with them; what is within the retention stays; the prune's outcome is
// told to PruneState, apart from the hand-over's.
func TestPublisherPrunesInChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t)
	node := fmt.Sprintf("prune-%d.example.net", time.Now().UnixNano())
	now := time.Now()
	var msgs []queue.Traced
	for i := range 25 {
		msgs = append(msgs, msg(fmt.Sprintf("OLD%d", i), "", "old@example.org", now.Add(-30*24*time.Hour), fmt.Sprintf("o%d@example.com", i)))
	}
	msgs = append(msgs, msg("NEW", "", "new@example.org", now.Add(-time.Hour), "n@example.com"))
	if err := s.Put(ctx, node, msgs); err != nil {
		t.Fatal(err)
	}
	var pruneErrs []error
	p := &tracking.Publisher{Store: s, Outbox: &memOutbox{}, Node: node, Now: time.Now, Retention: 7 * 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler), Every: time.Second, Timeout: 5 * time.Second, PruneChunk: 10,
		PruneState: func(err error) { pruneErrs = append(pruneErrs, err) }}
	if err := p.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if len(pruneErrs) != 1 || pruneErrs[0] != nil {
		t.Errorf("prune states %v, want one success", pruneErrs)
	}
	var n, r int
	if err := s.PG.QueryRow(ctx, `SELECT (SELECT count(*) FROM tracking_messages WHERE node = $1),
		(SELECT count(*) FROM tracking_recipients WHERE node = $1)`, node).Scan(&n, &r); err != nil || n != 1 || r != 1 {
		t.Errorf("left %d messages, %d recipients (%v); want the recent one", n, r, err)
	}
	if err := p.Round(ctx); err != nil || len(pruneErrs) != 1 {
		t.Errorf("second round: %v, prune states %v; want no prune within the hour", err, pruneErrs)
	}
}
