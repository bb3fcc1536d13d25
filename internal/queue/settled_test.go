package queue

import (
	"bytes"
	"cmp"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestDeliveryEventCarriesSenderAndDelay shows the delivery log event naming the sender and the time since
// arrival, and OnSettled seeing delivered and failed recipients (with that delay) but not deferred ones.
func TestDeliveryEventCarriesSenderAndDelay(t *testing.T) {
	var (
		mu      sync.Mutex
		logs    bytes.Buffer
		settled []Settled
	)
	e := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
		o.OnSettled = func(s Settled) { mu.Lock(); settled = append(settled, s); mu.Unlock() }
	})
	e.fake.script = func(j Job, r Recipient) Result {
		switch {
		case strings.HasPrefix(r.Addr.String(), "ok@"):
			return Result{Outcome: Delivered, Code: 250, Enhanced: "2.0.0", Text: "ok"}
		case strings.HasPrefix(r.Addr.String(), "bad@"):
			return Result{Outcome: Failed, Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		}
		return Result{Outcome: Deferred, Code: 451, Enhanced: "4.3.0", Text: "later"}
	}
	e.submit(t, "sender@example.org", "ok@a.example", "bad@b.example", "later@c.example")
	e.clock.Advance(90 * time.Second)
	e.runOnce(t)

	mu.Lock()
	defer mu.Unlock()
	events := map[string]map[string]any{}
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if ev["msg"] == "delivery" {
			events[ev["rcpt"].(string)] = ev
		}
	}
	for _, rcpt := range []string{"ok@a.example", "bad@b.example", "later@c.example"} {
		ev := events[rcpt]
		if ev["from"] != "sender@example.org" || ev["delay"] != 90.0 {
			t.Errorf("delivery event for %s: from=%v delay=%v, want sender@example.org and 90", rcpt, ev["from"], ev["delay"])
		}
	}
	// The bounce for bad@ is delivered in the same run, at once.
	want := []Settled{{Outcome: Delivered}, {Outcome: Delivered, Delay: 90 * time.Second}, {Outcome: Failed, Delay: 90 * time.Second}}
	slices.SortFunc(settled, func(a, b Settled) int {
		return cmp.Or(strings.Compare(string(a.Outcome), string(b.Outcome)), int(a.Delay-b.Delay))
	})
	if diff := gocmp.Diff(want, settled, cmpopts.IgnoreFields(Settled{}, "MsgID", "Rcpt")); diff != "" {
		t.Errorf("settled (-want +got):\n%s", diff)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
