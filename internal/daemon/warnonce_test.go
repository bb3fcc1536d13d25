package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestStandingWarningLoggedOnce: a condition that stays true across commits is logged once, and again only
// after it cleared and came back.
func TestStandingWarningLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var w warnings
	for _, on := range []bool{true, true, true, false, false, true, true} {
		w.set(log, "tlsrpt-unsigned", on, "reports unsigned")
	}
	w.set(log, "other", false, "never logged")
	if got := strings.Count(buf.String(), "reports unsigned"); got != 2 {
		t.Errorf("logged %d times, want 2 (once, then once after it cleared):\n%s", got, buf.String())
	}
	if strings.Contains(buf.String(), "never logged") {
		t.Errorf("a condition that never held was logged")
	}
}
