package daemon

import (
	"log/slog"
	"sync"
)

// warnings logs a standing condition (TLS reports unsigned, ...) once when it appears, not again while it
// lasts however often the settings are committed, and again if it comes back after it cleared.
type warnings struct {
	mu     sync.Mutex
	active map[string]bool
}

// set logs msg at WARN when the condition key becomes true, and forgets it when it becomes false.
func (w *warnings) set(log *slog.Logger, key string, on bool, msg string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active == nil {
		w.active = map[string]bool{}
	}
	if on && !w.active[key] {
		log.Warn(msg, args...)
	}
	w.active[key] = on
}
