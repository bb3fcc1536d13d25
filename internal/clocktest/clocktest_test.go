package clocktest

import (
	"sync"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	c := New(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v, want %v", got, t0)
	}
	if got := c.Advance(time.Hour); !got.Equal(t0.Add(time.Hour)) || !c.Now().Equal(got) {
		t.Errorf("Advance(1h) = %v, Now = %v, want %v", got, c.Now(), t0.Add(time.Hour))
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Errorf("after Set, Now = %v, want %v", got, t0)
	}
	var zero Clock
	if !zero.Now().IsZero() {
		t.Errorf("zero Clock reads %v", zero.Now())
	}
}

// TestClockConcurrent is run under -race: readers and writers at once.
func TestClockConcurrent(t *testing.T) {
	c := New(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); c.Advance(time.Second) }()
		go func() { defer wg.Done(); _ = c.Now() }()
	}
	wg.Wait()
	if got := c.Now(); !got.Equal(time.Unix(4, 0)) {
		t.Errorf("after 4 Advance(1s): %v", got)
	}
}
