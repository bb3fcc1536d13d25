// Package logtest implements a log sink for tests: a Buffer that the goroutines of a component under test
// write to through its slog handler, concurrently, and that the test reads whole (String) or as JSON records
// (Records), or waits on (Wait) instead of polling.
//
// It deliberately does not parse text-handler output into records.
package logtest

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
)

// Buffer is an io.Writer safe for concurrent use. The zero value is ready.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed and replaced by each Write
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.b.Write(p)
}

// Wait returns nil once cond holds, or ctx's error when it ends first. cond is called at once and after
// each Write; it may read the buffer.
func (b *Buffer) Wait(ctx context.Context, cond func() bool) error {
	for {
		b.mu.Lock()
		if b.written == nil {
			b.written = make(chan struct{})
		}
		next := b.written
		b.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Records decodes the lines written so far as JSON log records (slog.JSONHandler output) and returns those
// keep accepts, in order; lines that are not JSON objects are skipped.
func (b *Buffer) Records(keep func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m != nil && keep(m) {
			out = append(out, m)
		}
	}
	return out
}
