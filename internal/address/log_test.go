package address

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestValuesLogAsText: a typed value in a log line reads as its text, not as "{}" (the JSON handler sees no
// exported fields in a Host, Domain or Path).
func TestValuesLogAsText(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "domain", MustParseHost("Example.COM"), "literal", MustParseHost("[192.0.2.1]"),
		"d", MustParseDomain("example.org"), "from", MustParsePath("a@example.net"), "null", NullPath,
		"rcpt", MustParseAddress("b@example.com"))
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"domain": "example.com", "literal": "[192.0.2.1]", "d": "example.org",
		"from": "a@example.net", "null": NullPath.String(), "rcpt": "b@example.com"} {
		if got[k] != want {
			t.Errorf("%s logged as %#v, want %q", k, got[k], want)
		}
	}
}
