package cli

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestStatusIsHuman: ages print as durations, times in UTC, and unset times and empty values not at all.
func TestStatusIsHuman(t *testing.T) {
	raw := json.RawMessage(`{"node":"n1","uptime":"","started":"2026-03-04T05:06:07.123456+01:00",
		"queue":{"messages":0,"oldest":"0001-01-01T00:00:00Z","oldest_age_ns":0,"in_flight":1},
		"mtasts_cache_entries":{"enforce":2},"last_probe_ns":1500000,"wait_ns":7265000000000}`)
	var buf bytes.Buffer
	if err := printStatus(&buf, raw); err != nil {
		t.Fatal(err)
	}
	want := `node                          n1
started                       2026-03-04 04:06:07 UTC
queue.messages                0
queue.oldest_age              0s
queue.in_flight               1
mtasts_cache_entries.enforce  2
last_probe                    2ms
wait                          2h1m5s
`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
