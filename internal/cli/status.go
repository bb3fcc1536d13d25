package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// printStatus prints the status answer as aligned "key  value" lines in document order, nested keys joined
// by dots and array elements numbered (walkJSON), for people: durations
// the API gives in nanoseconds (keys ending in _ns) as durations ("2h5m0s"), times in UTC without the
// fractional seconds, and no line for a time that is not set (the zero time).
func printStatus(w io.Writer, raw json.RawMessage) error {
	tw := newTable(w)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := walkJSON(dec, "", func(k, v string) {
		if k, v, ok := humanField(k, v); ok {
			row(tw, k, v)
		}
	}); err != nil {
		return fmt.Errorf("decoding the admin API's answer: %w", err)
	}
	return tw.Flush()
}

// humanField rewrites one status field; ok is false for a field not worth a line.
func humanField(k, v string) (string, string, bool) {
	if v == "" {
		return k, v, false
	}
	if base, isNS := strings.CutSuffix(k, "_ns"); isNS {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return base, humanDuration(time.Duration(n)), true
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		if t.IsZero() {
			return k, "", false
		}
		return k, t.UTC().Format("2006-01-02 15:04:05 UTC"), true
	}
	return k, v, true
}

// humanDuration rounds to what a person reads: seconds from a minute up, milliseconds below.
func humanDuration(d time.Duration) string {
	if d >= time.Minute || d <= -time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}
