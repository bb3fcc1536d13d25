package admin_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
)

// The lookup shows what sending would use: the record at _smtp._tls.<domain>, exactly one "v=TLSRPTv1;"
// record, only its mailto: and https: rua URIs.
func TestTLSRPTLookupShowsTheRecordAsSendingWouldSelectIt_RPT1_RPT3_RPT5(t *testing.T) {
	h := newFullHarness(t, nil)
	got := decode[admin.TLSRPTLookup](t, h.harness, "GET", "/api/v1/tlsrpt/lookup/Example.ORG.", "")
	want := admin.TLSRPTLookup{
		Domain: "example.org",
		Name:   "_smtp._tls.example.org",
		TXT:    testTXT()["example.org"],
		Valid:  true,
		RUA:    []string{"mailto:tlsrpt@example.org", "https://reports.example.org/tlsrpt"},
		// RFC 8460 Section 3: only mailto: and https: are usable.
		Ignored: []string{"ftp://x.example"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lookup example.org (-want +got):\n%s", diff)
	}

	tests := []struct {
		domain  string
		wantErr string
		txts    int
	}{
		{"example.net", "invalid TLSRPT record", 1},
		{"example.com", "more than one TLSRPT record", 2},
		{"nothing.example", "no TLSRPT record", 0},
		{"nx.example", "no TLSRPT record: _smtp._tls.nx.example: no such name", 0},
	}
	for _, tt := range tests {
		got := decode[admin.TLSRPTLookup](t, h.harness, "GET", "/api/v1/tlsrpt/lookup/"+tt.domain, "")
		if got.Valid || !strings.Contains(got.Error, tt.wantErr) || len(got.TXT) != tt.txts || got.RUA == nil || len(got.RUA) != 0 {
			t.Errorf("lookup %s = %+v, want invalid with %q", tt.domain, got, tt.wantErr)
		}
	}
	if code, body := h.send(t, "GET", "/api/v1/tlsrpt/lookup/slow.example", ""); code != http.StatusBadGateway || !strings.Contains(body, "i/o timeout") {
		t.Errorf("lookup with a DNS timeout: %d %s", code, body)
	}
	if code, body := h.send(t, "GET", "/api/v1/tlsrpt/lookup/a..b", ""); code != http.StatusBadRequest || !strings.Contains(body, "invalid domain") {
		t.Errorf("lookup a..b: %d %s", code, body)
	}
}

func TestTLSRPTPendingPreviewSend(t *testing.T) {
	h := newFullHarness(t, nil)

	pending := decode[[]admin.PendingReport](t, h.harness, "GET", "/api/v1/tlsrpt/pending", "")
	wantPending := []admin.PendingReport{
		{Day: "2025-05-31", Domain: "example.org", Policies: 1, Successful: 9, Failed: 2, ReportID: "2025-05-31T00:00:00Z_example.org_r1"},
		{Day: "2025-06-01", Domain: "example.net", Policies: 1, Successful: 3},
	}
	if diff := cmp.Diff(wantPending, pending); diff != "" {
		t.Errorf("pending (-want +got):\n%s", diff)
	}

	// The preview is the report exactly as RFC 8460 has it; the day defaults to today (UTC).
	code, body := h.send(t, "GET", "/api/v1/tlsrpt/preview/example.net", "")
	if code != 200 || !strings.Contains(body, `"policy-type": "no-policy-found"`) || !strings.Contains(body, `"start-datetime": "2025-06-01T00:00:00Z"`) {
		t.Errorf("preview example.net: %d %s", code, body)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(body), &rep); err != nil || rep["organization-name"] != "Corp Example" {
		t.Errorf("preview is not the report JSON: %v, %v", err, rep)
	}
	code, body = h.send(t, "GET", "/api/v1/tlsrpt/preview/EXAMPLE.org?day=2025-05-31", "")
	if code != 200 || !strings.Contains(body, `"result-type": "certificate-host-mismatch"`) || !strings.Contains(body, `"total-failure-session-count": 2`) {
		t.Errorf("preview example.org 2025-05-31: %d %s", code, body)
	}

	errTests := []struct {
		method, path, body string
		want               int
		wantErr            string
	}{
		{"GET", "/api/v1/tlsrpt/preview/example.org", "", 404, "no sessions recorded for example.org on 2025-06-01"},
		{"GET", "/api/v1/tlsrpt/preview/example.org?day=31.05.2025", "", 400, `invalid day "31.05.2025"`},
		{"GET", "/api/v1/tlsrpt/preview/example.org?date=2025-05-31", "", 400, `unknown query parameter "date"`},
		{"GET", "/api/v1/tlsrpt/preview/a..b", "", 400, "invalid domain"},
		{"POST", "/api/v1/tlsrpt/send", `{}`, 400, `either "day"`},
		{"POST", "/api/v1/tlsrpt/send", `{"day": "2025-05-31", "today": true}`, 400, `either "day"`},
		{"POST", "/api/v1/tlsrpt/send", `{"day": "yesterday"}`, 400, `invalid day "yesterday"`},
		{"POST", "/api/v1/tlsrpt/send", `{"day": "2025-06-01"}`, 409, `the day is not over yet: 2025-06-01 (send the current day with "today": true)`},
		{"POST", "/api/v1/tlsrpt/send", "", 400, `either "day"`},
	}
	for _, tt := range errTests {
		code, body := h.send(t, tt.method, tt.path, tt.body)
		if code != tt.want || !strings.Contains(errorOf(t, body), tt.wantErr) {
			t.Errorf("%s %s %s: %d %s, want %d with %q", tt.method, tt.path, tt.body, code, body, tt.want, tt.wantErr)
		}
	}

	res := decode[admin.SendResult](t, h.harness, "POST", "/api/v1/tlsrpt/send", `{"day": "2025-05-31"}`)
	wantRes := admin.SendResult{Day: "2025-05-31", Domains: []admin.SendDomainResult{{
		Domain: "example.org", ReportID: "2025-05-31T00:00:00Z_example.org_r1", Status: "sent",
		Deliveries: []admin.SentReport{{Day: "2025-05-31", Domain: "example.org", ReportID: "2025-05-31T00:00:00Z_example.org_r1",
			Destination: "mailto:tlsrpt@example.org", Status: "queued", Attempts: 1, FirstAttempt: admintest.Now(),
			LastAttempt: admintest.Now(), MsgID: "msg-example.org"}},
	}}}
	if diff := cmp.Diff(wantRes, res); diff != "" {
		t.Errorf("send 2025-05-31 (-want +got):\n%s", diff)
	}
	if res := decode[admin.SendResult](t, h.harness, "POST", "/api/v1/tlsrpt/send", `{"today": true}`); res.Day != "2025-06-01" || len(res.Domains) != 1 || res.Domains[0].Domain != "example.net" {
		t.Errorf("send today = %+v", res)
	}
	if diff := cmp.Diff([]string{"send 2025-05-31", "send-partial 2025-06-01"}, h.reports.Calls()); diff != "" {
		t.Errorf("sender calls (-want +got):\n%s", diff)
	}
	sent := decode[[]admin.SentReport](t, h.harness, "GET", "/api/v1/tlsrpt/sent", "")
	if len(sent) != 2 || sent[0].Destination != "mailto:tlsrpt@example.org" || sent[1].Day != "2025-06-01" {
		t.Errorf("sent = %+v", sent)
	}
	if p := decode[[]admin.PendingReport](t, h.harness, "GET", "/api/v1/tlsrpt/pending", ""); len(p) != 0 {
		t.Errorf("pending after send = %+v", p)
	}

	h.reports.Err = errors.New("tlsreport: report log: database is locked")
	if code, body := h.send(t, "GET", "/api/v1/tlsrpt/sent", ""); code != 500 || !strings.Contains(body, "database is locked") {
		t.Errorf("sender failure: %d %s", code, body)
	}
}

func TestTLSRPTSuppressions(t *testing.T) {
	h := newFullHarness(t, nil)
	list := decode[[]admin.Suppression](t, h.harness, "GET", "/api/v1/tlsrpt/suppressions", "")
	want := []admin.Suppression{{Entry: "abuse@example.com", Note: "asked to stop", Added: admintest.Now().AddDate(0, 0, -1)}}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("suppressions (-want +got):\n%s", diff)
	}
	if got := decode[admin.ActionResult](t, h.harness, "POST", "/api/v1/tlsrpt/suppressions", `{"entry": "mailto:Reports@Example.NET", "note": "bounces"}`); got != (admin.ActionResult{Action: "suppress", Entry: "reports@example.net"}) {
		t.Errorf("suppress = %+v", got)
	}
	decode[admin.ActionResult](t, h.harness, "POST", "/api/v1/tlsrpt/suppressions", `{"entry": "https://r.example/a/b"}`)
	// An https URL is one escaped path segment.
	if got := decode[admin.ActionResult](t, h.harness, "DELETE", admin.SuppressionPath("https://r.example/a/b"), ""); got.Entry != "https://r.example/a/b" {
		t.Errorf("unsuppress URL = %+v", got)
	}
	decode[admin.ActionResult](t, h.harness, "DELETE", "/api/v1/tlsrpt/suppressions/ABUSE@example.com", "")
	list = decode[[]admin.Suppression](t, h.harness, "GET", "/api/v1/tlsrpt/suppressions", "")
	if len(list) != 1 || list[0].Entry != "reports@example.net" || list[0].Note != "bounces" {
		t.Errorf("suppressions after changes = %+v", list)
	}
	want2 := []string{"suppress reports@example.net", "suppress https://r.example/a/b", "unsuppress https://r.example/a/b", "unsuppress abuse@example.com"}
	if diff := cmp.Diff(want2, h.reports.Calls()); diff != "" {
		t.Errorf("sender calls (-want +got):\n%s", diff)
	}

	errTests := []struct {
		method, path, body string
		want               int
		wantErr            string
	}{
		{"POST", "/api/v1/tlsrpt/suppressions", `{"entry": ""}`, 400, "invalid suppression entry"},
		{"POST", "/api/v1/tlsrpt/suppressions", `{"entry": "a b@example.org"}`, 400, "invalid suppression entry"},
		{"POST", "/api/v1/tlsrpt/suppressions", `{"entry": "a@example.org", "note": "x\ny"}`, 400, "one line"},
		{"POST", "/api/v1/tlsrpt/suppressions", `{"address": "a@example.org"}`, 400, `unknown field "address"`},
		{"DELETE", "/api/v1/tlsrpt/suppressions/never@example.org", "", 404, `"never@example.org" is not on the suppression list`},
	}
	for _, tt := range errTests {
		code, body := h.send(t, tt.method, tt.path, tt.body)
		if code != tt.want || !strings.Contains(errorOf(t, body), tt.wantErr) {
			t.Errorf("%s %s %s: %d %s, want %d with %q", tt.method, tt.path, tt.body, code, body, tt.want, tt.wantErr)
		}
	}
}
