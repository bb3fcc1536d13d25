package tlsreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/tlsrpt"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func buildOne(t *testing.T, e *env, domain string, day time.Time) Pending {
	t.Helper()
	ps, err := e.rep.BuildReports(t.Context(), day)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Domain == domain {
			return p
		}
	}
	t.Fatalf("no report for %s on %s among %d", domain, day.Format(dayFormat), len(ps))
	return Pending{}
}

func TestReportGolden_RPT10_RPT15_RPT16_RPT17(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recordStandardDay(e.rec)
	p := buildOne(t, e, "example.com", testDay)
	got, err := p.Report.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("report differs from %s (-want +got):\n%s", golden, diff)
	}
	checkReportJSON(t, got)
}

// TestReportContent_RPT15_RPT16_RPT18_RPT20 checks the report's content field by field, independently of the
// golden file.
func TestReportContent_RPT15_RPT16_RPT18_RPT20(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recordStandardDay(e.rec)
	p := buildOne(t, e, "example.com", testDay)
	want := []tlsrpt.PolicyResults{{
		Policy:  stsPolicy,
		Summary: tlsrpt.Summary{Successful: 5, Failed: 3},
		FailureDetails: []tlsrpt.FailureDetails{{
			ResultType:          tlsrpt.ResultCertificateExpired,
			SendingMTAIP:        "2001:db8::1",
			ReceivingMXHostname: "mx1.example.com",
			ReceivingMXHelo:     "mx1.example.com",
			ReceivingIP:         "192.0.2.25",
			FailedSessionCount:  2,
		}, {
			ResultType:          tlsrpt.ResultValidationFailure,
			SendingMTAIP:        "198.51.100.7",
			ReceivingMXHostname: "mx9.other.test",
			FailedSessionCount:  1,
			FailureReasonCode:   "mx-not-in-policy",
			AdditionalInfo:      `ext: a"b\c`,
		}},
	}}
	if diff := cmp.Diff(want, p.Report.Policies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	if p.Report.OrganizationName != "Sender Org" || p.Report.ContactInfo != contact {
		t.Errorf("org/contact = %q, %q", p.Report.OrganizationName, p.Report.ContactInfo)
	}
	if !p.Report.DateRange.Start.Equal(testDay) || !p.Report.DateRange.End.Equal(testDay.AddDate(0, 0, 1)) {
		t.Errorf("date range = %+v", p.Report.DateRange)
	}
}

func TestReportOnePerPolicyDomain_RPT27_RPT14(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := testDay.Add(time.Hour)
	recordN(e.rec, 2, success(stsPolicy, at))
	recordN(e.rec, 1, success(tlsaPolicy, at))
	recordN(e.rec, 1, failure(noPolicy, at, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultSTARTTLSNotSupported, ReceivingMXHostname: "mx.other.test"}))
	// A U-label policy domain is reported in A-labels (RPT-15).
	recordN(e.rec, 1, success(tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: "bücher.test"}, at))
	// The next day has its own report.
	recordN(e.rec, 1, success(stsPolicy, at.AddDate(0, 0, 1)))
	ps, err := e.rep.BuildReports(t.Context(), testDay)
	if err != nil {
		t.Fatal(err)
	}
	var domains []string
	ids := map[string]bool{}
	for _, p := range ps {
		domains = append(domains, p.Domain)
		if ids[p.Report.ReportID] {
			t.Errorf("report-id %s used twice", p.Report.ReportID)
		}
		ids[p.Report.ReportID] = true
		if len(p.Report.Policies) != 1 {
			t.Errorf("%s: %d policies, want 1", p.Domain, len(p.Report.Policies))
		}
	}
	if diff := cmp.Diff([]string{"example.com", "mx1.example.com", "other.test", "xn--bcher-kva.test"}, domains); diff != "" {
		t.Errorf("domains (-want +got):\n%s", diff)
	}
	next := buildOne(t, e, "example.com", testDay.AddDate(0, 0, 1))
	if ids[next.Report.ReportID] {
		t.Errorf("next day's report reuses report-id %s", next.Report.ReportID)
	}
	// Building again keeps the report-ids (RPT-14).
	again, err := e.rep.BuildReports(t.Context(), testDay)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range again {
		if !ids[p.Report.ReportID] {
			t.Errorf("%s: report-id changed to %s", p.Domain, p.Report.ReportID)
		}
	}
	// An empty day has no reports.
	none, err := e.rep.BuildReports(t.Context(), testDay.AddDate(0, 0, -1))
	if err != nil || len(none) != 0 {
		t.Errorf("BuildReports(empty day) = %v, %v", none, err)
	}
}

func TestReportDayBoundaries_RPT12(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	end := testDay.AddDate(0, 0, 1)
	e.rec.Record(success(stsPolicy, end.Add(-500*time.Millisecond)))
	e.rec.Record(success(stsPolicy, end))
	// Times in other zones are placed by their UTC day.
	e.rec.Record(success(stsPolicy, time.Date(2024, 3, 9, 20, 0, 0, 0, time.FixedZone("EST", -5*3600))))
	for _, tc := range []struct {
		day  time.Time
		want int64
	}{{testDay, 2}, {end, 1}} {
		p := buildOne(t, e, "example.com", tc.day.Add(13*time.Hour))
		if got := p.Report.Policies[0].Summary.Successful; got != tc.want {
			t.Errorf("%s: successful = %d, want %d", tc.day.Format(dayFormat), got, tc.want)
		}
		js, err := p.Report.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			DR map[string]string `json:"date-range"`
		}
		if err := json.Unmarshal(js, &m); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"start-datetime": tc.day.Format("2006-01-02T15:04:05Z"),
			"end-datetime":   tc.day.AddDate(0, 0, 1).Format("2006-01-02T15:04:05Z"),
		}
		if diff := cmp.Diff(want, m.DR); diff != "" {
			t.Errorf("date-range (-want +got):\n%s", diff)
		}
	}
}

// TestRecorderSurvivesRestart_RPT16 records sessions, closes the recorder and the database mid-day, reopens
// both and records more: the report counts every session.
func TestRecorderSurvivesRestart_RPT16(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	at := testDay.Add(8 * time.Hour)
	for round := 0; round < 2; round++ {
		db := openDB(t, path)
		rec, err := NewRecorder(t.Context(), db, RecorderOptions{FlushSessions: 2})
		if err != nil {
			t.Fatal(err)
		}
		recordN(rec, 3, success(stsPolicy, at))
		recordN(rec, 2, failure(stsPolicy, at, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateExpired, ReceivingMXHostname: "mx1.example.com"}))
		if err := rec.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		rec.Record(success(stsPolicy, at)) // after Close: dropped
		if got := rec.Dropped(); got != 1 {
			t.Errorf("Dropped = %d, want 1", got)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db := openDB(t, path)
	rep := &Reporter{DB: db, Contact: mustAddr(contact)}
	ps, err := rep.BuildReports(t.Context(), testDay)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("%d reports, want 1", len(ps))
	}
	pr := ps[0].Report.Policies[0]
	if pr.Summary != (tlsrpt.Summary{Successful: 6, Failed: 4}) || len(pr.FailureDetails) != 1 || pr.FailureDetails[0].FailedSessionCount != 4 {
		t.Errorf("policy results = %+v", pr)
	}
}

func TestRecorderBackgroundFlush(t *testing.T) {
	t.Parallel()
	db := openDB(t, "")
	flushed := make(chan error, 1)
	rec, err := NewRecorder(t.Context(), db, RecorderOptions{FlushSessions: 3, FlushInterval: time.Hour,
		OnFlush: func(err error) {
			select {
			case flushed <- err:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close(t.Context())
	recordN(rec, 3, success(stsPolicy, testDay))
	// The third session kicks the flusher (the hourly tick cannot come first); wait for it, bounded.
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatalf("background flush: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("background flush did not happen")
	}
	var n int64
	if err := db.QueryRowContext(t.Context(), `SELECT COALESCE(SUM(success), 0) FROM tlsreport_policies`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("stored sessions = %d, %v; want 3", n, err)
	}
}

func TestRecorderBufferBound(t *testing.T) {
	t.Parallel()
	db := openDB(t, "")
	rec, err := NewRecorder(t.Context(), db, RecorderOptions{MaxKeys: 2, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close(t.Context())
	for i := 0; i < 4; i++ {
		rec.Record(success(tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: fmt.Sprintf("d%d.test", i)}, testDay))
	}
	rec.Record(success(tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: "d0.test"}, testDay)) // existing key: kept
	if got := rec.Dropped(); got != 2 {
		t.Errorf("Dropped = %d, want 2", got)
	}
	if err := rec.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := db.QueryRow(`SELECT SUM(success) FROM tlsreport_policies`).Scan(&n); err != nil || n != 3 {
		t.Errorf("stored successes = %d, %v; want 3", n, err)
	}
}

func TestPreviewAndPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recordStandardDay(e.rec)
	e.rec.Record(success(noPolicy, testDay.Add(time.Hour)))
	rep, err := e.rep.Preview(t.Context(), "Example.COM", testDay.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Policies[0].Summary.Successful != 5 {
		t.Errorf("preview = %+v", rep.Policies[0].Summary)
	}
	if _, err := e.rep.Preview(t.Context(), "nothing.test", testDay); !errors.Is(err, ErrNotFound) {
		t.Errorf("Preview(nothing.test) error = %v, want ErrNotFound", err)
	}
	ps, err := e.rep.Pending(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Domain != "example.com" || ps[0].Successful != 5 || ps[0].Failed != 3 || ps[0].ReportID != rep.ReportID {
		t.Errorf("Pending = %+v", ps)
	}
}

// checkReportJSON validates a report against testdata/tlsrpt.schema.json and the I-JSON rules (RPT-9).
func checkReportJSON(t *testing.T, js []byte) {
	t.Helper()
	if err := checkNoDuplicateKeys(js); err != nil {
		t.Errorf("RPT-9: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "tlsrpt.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, err := range schemaCheck(schema, doc, "$") {
		t.Errorf("schema: %v", err)
	}
}

func TestSchemaCheckerCatchesErrors_RPT9_RPT10_RPT17(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("testdata", "tlsrpt.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	good := `{"organization-name":"o","date-range":{"start-datetime":"2024-03-10T00:00:00Z","end-datetime":"2024-03-11T00:00:00Z"},
		"contact-info":"a@b.test","report-id":"x@y","policies":[{"policy":{"policy-type":"sts","policy-string":[],"policy-domain":"d.test"},
		"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}]}`
	for _, tc := range []struct {
		name, from, to string
	}{
		{"good", "", ""},
		{"policies not an array", `"policies":[`, `"policies":"","zz":[`},
		{"missing contact", `"contact-info":"a@b.test",`, ``},
		{"string count", `"total-successful-session-count":1`, `"total-successful-session-count":"1"`},
		{"fractional count", `"total-successful-session-count":1`, `"total-successful-session-count":1.5`},
		{"bad key spelling", `"policy-domain"`, `"policy_domain"`},
		{"date without zone", `"2024-03-10T00:00:00Z"`, `"2024-03-10T00:00:00"`},
		{"unknown policy type", `"sts"`, `"dane"`},
	} {
		doc := strings.Replace(good, tc.from, tc.to, 1)
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		errs := schemaCheck(schema, v, "$")
		if (len(errs) == 0) != (tc.name == "good") {
			t.Errorf("%s: schema errors %v", tc.name, errs)
		}
	}
	if err := checkNoDuplicateKeys([]byte(`{"a":1,"b":{"c":1,"c":2}}`)); err == nil {
		t.Errorf("duplicate key not found")
	}
	if err := checkNoDuplicateKeys([]byte(`{"a":[{"c":1},{"c":2}],"b":{"c":1}}`)); err != nil {
		t.Errorf("false duplicate: %v", err)
	}
}

// schemaCheck is a small JSON Schema checker for the keywords testdata/tlsrpt.schema.json uses. Numbers
// must be decoded with UseNumber.
func schemaCheck(schema map[string]any, v any, path string) []error {
	var errs []error
	fail := func(f string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+f, append([]any{path}, args...)...))
	}
	switch typ, _ := schema["type"].(string); typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			fail("want an object, got %T", v)
			return errs
		}
		props, _ := schema["properties"].(map[string]any)
		for _, k := range schema["required"].([]any) {
			if _, ok := obj[k.(string)]; !ok {
				fail("required member %q missing", k)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub, ok := props[k].(map[string]any)
			if !ok {
				if schema["additionalProperties"] == false {
					fail("member %q not allowed", k)
				}
				continue
			}
			errs = append(errs, schemaCheck(sub, obj[k], path+"."+k)...)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			fail("want an array, got %T", v)
			return errs
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, e := range arr {
				errs = append(errs, schemaCheck(items, e, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			fail("want a string, got %T", v)
			return errs
		}
		if ml, ok := schema["minLength"].(float64); ok && len(s) < int(ml) {
			fail("shorter than %v", ml)
		}
		if enum, ok := schema["enum"].([]any); ok {
			found := false
			for _, e := range enum {
				found = found || e == s
			}
			if !found {
				fail("%q not in enum", s)
			}
		}
		switch schema["format"] {
		case "date-time":
			// RFC 3339 date-time with a time-zone offset (RPT-12).
			if _, err := time.Parse(time.RFC3339, s); err != nil {
				fail("not an RFC 3339 date-time: %q", s)
			}
		case "ip":
			// RPT-18: dotted quad or RFC 5952 IPv6, which is what netip prints.
			ip, err := netip.ParseAddr(s)
			if err != nil || ip.String() != s {
				fail("not a canonical IP address: %q", s)
			}
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			fail("want an integer, got %T", v)
			return errs
		}
		i, err := n.Int64()
		if err != nil {
			fail("not an integer: %s", n)
			return errs
		}
		if min, ok := schema["minimum"].(float64); ok && float64(i) < min {
			fail("%d below minimum %v", i, min)
		}
	default:
		fail("schema type %q not supported by the checker", typ)
	}
	return errs
}

// checkNoDuplicateKeys walks the token stream and fails on a member name used twice in one object.
func checkNoDuplicateKeys(js []byte) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var value func() error
	value = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				if seen[k.(string)] {
					return fmt.Errorf("duplicate member %q", k)
				}
				seen[k.(string)] = true
				if err := value(); err != nil {
					return err
				}
			}
			_, err = dec.Token() // '}'
			return err
		case json.Delim('['):
			for dec.More() {
				if err := value(); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ']'
			return err
		}
		return nil
	}
	return value()
}

func TestRecorderConcurrent(t *testing.T) {
	t.Parallel()
	db := openDB(t, "")
	rec, err := NewRecorder(t.Context(), db, RecorderOptions{FlushSessions: 50, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				if i%5 == 0 {
					rec.Record(failure(stsPolicy, testDay, tlsrpt.FailureDetails{ResultType: tlsrpt.ResultCertificateExpired, ReceivingMXHostname: fmt.Sprintf("mx%d.example.com", g)}))
				} else {
					rec.Record(success(stsPolicy, testDay))
				}
			}
		}()
	}
	wg.Wait()
	if err := rec.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep := &Reporter{DB: db, Contact: mustAddr(contact)}
	ps, err := rep.BuildReports(t.Context(), testDay)
	if err != nil {
		t.Fatal(err)
	}
	pr := ps[0].Report.Policies[0]
	if pr.Summary != (tlsrpt.Summary{Successful: 1600, Failed: 400}) || len(pr.FailureDetails) != 8 {
		t.Errorf("summary %+v, %d failure entries", pr.Summary, len(pr.FailureDetails))
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dns.Add(`_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@r.test"`)
	recordStandardDay(e.rec)
	e.rec.Record(success(stsPolicy, testDay.AddDate(0, 0, 1)))
	sendDay(t, e)
	if err := e.rep.Prune(t.Context(), testDay.AddDate(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	ps, err := e.rep.BuildReports(t.Context(), testDay)
	if err != nil || len(ps) != 0 {
		t.Errorf("after Prune: %d reports, %v", len(ps), err)
	}
	sent, err := e.rep.Sent(t.Context())
	if err != nil || len(sent) != 0 {
		t.Errorf("after Prune: Sent = %+v, %v", sent, err)
	}
	if p := buildOne(t, e, "example.com", testDay.AddDate(0, 0, 1)); p.Report.Policies[0].Summary.Successful != 1 {
		t.Errorf("next day pruned too")
	}
}
