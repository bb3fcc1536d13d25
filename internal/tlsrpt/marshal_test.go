package tlsrpt

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestMarshalDateTimesAndArrays_RPT11_RPT12(t *testing.T) {
	t.Parallel()
	ny := time.FixedZone("EST", -5*3600)
	r := &Report{
		OrganizationName: "Org",
		DateRange: DateRange{
			Start: time.Date(2024, 3, 9, 19, 0, 0, 0, ny),
			End:   time.Date(2024, 3, 11, 0, 0, 0, 500, time.UTC),
		},
		ContactInfo: "tlsrpt@reports.sender.test",
		ReportID:    "x@y",
		Policies:    []PolicyResults{{Policy: Policy{Type: PolicyNoPolicyFound, Domain: "example.com"}}},
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"start-datetime": "2024-03-10T00:00:00Z"`,
		`"end-datetime": "2024-03-11T00:00:00Z"`,
		`"policy-string": []`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Marshal output lacks %s:\n%s", want, s)
		}
	}
	// The original is not modified.
	if r.Policies[0].Policy.String != nil {
		t.Errorf("Marshal changed its receiver")
	}
	empty := &Report{}
	b, err = empty.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["policies"].([]any); !ok {
		t.Errorf("policies = %#v, want an array", m["policies"])
	}
	// Round trip.
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
}

func TestMarshalEscapes_RPT38(t *testing.T) {
	t.Parallel()
	r := &Report{Policies: []PolicyResults{{Policy: Policy{Type: PolicySTS, String: []string{`ext: a"b\c`}}}}}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"ext: a\"b\\c"`) {
		t.Errorf("policy-string not escaped:\n%s", b)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Policies[0].Policy.String[0]; got != `ext: a"b\c` {
		t.Errorf("round trip = %q", got)
	}
}

func TestFileName_RPT25(t *testing.T) {
	t.Parallel()
	start := time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 0, 1)
	re := regexp.MustCompile(`^[a-z0-9.-]+![a-z0-9.-]+![0-9]+![0-9]+(![A-Za-z0-9]+)?\.json(\.gz)?$`)
	for _, tc := range []struct {
		id   string
		gz   bool
		want string
	}{
		{"001", true, "reports.sender.test!example.com!1710028800!1710115200!001.json.gz"},
		{"", false, "reports.sender.test!example.com!1710028800!1710115200.json"},
		{"a-b.c@d", true, "reports.sender.test!example.com!1710028800!1710115200!abcd.json.gz"},
		{"-.@", true, "reports.sender.test!example.com!1710028800!1710115200.json.gz"},
	} {
		got := FileName("reports.sender.test", "example.com", start, end, tc.id, tc.gz)
		if got != tc.want {
			t.Errorf("FileName(id %q, gz %v) = %q, want %q", tc.id, tc.gz, got, tc.want)
		}
		if !re.MatchString(got) {
			t.Errorf("FileName %q does not match %v", got, re)
		}
	}
}
