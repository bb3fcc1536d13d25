package tlsrpt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MediaTypeGzip and MediaTypeJSON are the report media types of RFC 8460 Section 6.4 and 6.5.
const (
	MediaTypeGzip = "application/tlsrpt+gzip"
	MediaTypeJSON = "application/tlsrpt+json"
)

// MarshalJSON writes the date range as RFC 3339 date-times in UTC with the "Z" offset and whole seconds
// (RFC 8460 Section 4.4: "date-time" with a time-zone offset; RPT-12).
func (d DateRange) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	}{formatTime(d.Start), formatTime(d.End)})
}

func formatTime(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05Z")
}

// Marshal encodes the report as I-JSON (RFC 7493, RFC 8460 Section 4): UTF-8 (invalid sequences are replaced
// by the encoder), member names from the schema, integer counts, and "policies" and every "policy-string"
// always arrays, never null (RFC 8460 Section 4, RPT-11). The output is indented for people reading it.
func (r *Report) Marshal() ([]byte, error) {
	c := *r
	c.Policies = append(make([]PolicyResults, 0, len(r.Policies)), r.Policies...)
	for i := range c.Policies {
		if c.Policies[i].Policy.String == nil {
			c.Policies[i].Policy.String = []string{}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// RFC 8460 Section 4 and RFC 7493: I-JSON. encoding/json never writes duplicate names for a struct and
	// escapes quotes and backslashes in every string (RPT-38).
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("tlsrpt: marshal report: %w", err)
	}
	return buf.Bytes(), nil
}

// FileName returns the report file name of RFC 8460 Section 5.1:
//
//	filename = sender "!" policy-domain "!" begin-timestamp "!" end-timestamp [ "!" unique-id ] "." extension
//
// with the timestamps in seconds since the Unix epoch and extension "json" or "json.gz". The unique-id is
// reduced to its ALPHA and DIGIT characters (the grammar allows nothing else) and left out when none remain.
// The domains should be A-labels; "!" is removed from them so the fields stay separable.
func FileName(submitter, policyDomain string, start, end time.Time, uniqueID string, gzip bool) string {
	clean := func(s string) string { return strings.ReplaceAll(s, "!", "") }
	var b strings.Builder
	b.WriteString(clean(submitter))
	b.WriteByte('!')
	b.WriteString(clean(policyDomain))
	b.WriteByte('!')
	b.WriteString(strconv.FormatInt(start.Unix(), 10))
	b.WriteByte('!')
	b.WriteString(strconv.FormatInt(end.Unix(), 10))
	var id strings.Builder
	for i := 0; i < len(uniqueID); i++ {
		if isAlnum(uniqueID[i]) {
			id.WriteByte(uniqueID[i])
		}
	}
	if id.Len() > 0 {
		b.WriteByte('!')
		b.WriteString(id.String())
	}
	b.WriteString(".json")
	if gzip {
		b.WriteString(".gz")
	}
	return b.String()
}
