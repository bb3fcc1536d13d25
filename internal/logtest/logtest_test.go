package logtest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func TestBufferConcurrentJSON(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { log.Info("delivery", "n", i, "domain", "example.com") })
	}
	wg.Wait()
	b.Write([]byte("not json\n"))
	log.Info("other")
	got := b.Records(func(m map[string]any) bool { return m["msg"] == "delivery" })
	if len(got) != 8 {
		t.Fatalf("%d delivery records, want 8:\n%s", len(got), b.String())
	}
	seen := map[float64]bool{}
	for _, m := range got {
		seen[m["n"].(float64)] = true
	}
	if len(seen) != 8 {
		t.Errorf("records %v, want n = 0..7 once each", got)
	}
	if all := b.Records(func(map[string]any) bool { return true }); len(all) != 9 {
		t.Errorf("%d records in all, want 9 (the text line skipped)", len(all))
	}
}

func TestBufferWait(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	go func() {
		for i := range 3 {
			log.Info("step", "n", i)
		}
	}()
	third := func() bool { return len(b.Records(func(m map[string]any) bool { return m["n"] == 2.0 })) == 1 }
	if err := b.Wait(ctx, third); err != nil {
		t.Fatal(err)
	}
	done, stop := context.WithCancel(t.Context())
	stop()
	if err := b.Wait(done, func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context = %v, want context.Canceled", err)
	}
}
