package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlsreport"
)

// testSeed is generation 1 of the settings harness.
func testSeed() map[string]string {
	return map[string]string{"Sender.EnableMTASTS": "true", "TLSRPT.OrganizationName": "Acme"}
}

// testTXT are the TXT records the harness's TLSRPT lookup finds, by domain.
func testTXT() map[string][]string {
	return map[string][]string{
		"example.org": {"v=spf1 -all", "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://reports.example.org/tlsrpt,ftp://x.example"},
		"example.net": {"v=TLSRPTv1; rua=foo"},
		"example.com": {"v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"},
	}
}

// lookupTXT is the harness's Options.LookupTLSRPT: testTXT, NXDOMAIN for nx.example, a timeout for
// slow.example, no records otherwise.
func lookupTXT(ctx context.Context, domain string) ([]string, error) {
	switch domain {
	case "nx.example":
		return nil, fmt.Errorf("%w: TXT _smtp._tls.%s", dnsx.ErrNotFound, domain)
	case "slow.example":
		return nil, fmt.Errorf("%w: TXT _smtp._tls.%s: i/o timeout", dnsx.ErrTemporary, domain)
	}
	return testTXT()[domain], nil
}

type fullHarness struct {
	*harness
	settings *settings.Store
	reports  *admintest.Reports
}

// newFullHarness serves the API with a real settings store, the fake report sender and the fake TXT
// lookup; edit changes the options before New.
func newFullHarness(t *testing.T, edit func(*admin.Options)) *fullHarness {
	t.Helper()
	st := admintest.OpenSettings(t, testSeed())
	rep := admintest.ReportsFixture()
	h := newHarness(t, func(o *admin.Options) {
		o.Settings = st
		o.Reports = func() admin.ReportsAPI { return rep }
		o.LookupTLSRPT = lookupTXT
		if edit != nil {
			edit(o)
		}
	})
	return &fullHarness{harness: h, settings: st, reports: rep}
}

// send sends a request with the token and a JSON body ("" for none) and returns status and body.
func (h *harness) send(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, h.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, string(b)
}

// decode sends a request that must succeed and decodes its answer into a T.
func decode[T any](t *testing.T, h *harness, method, path, body string) T {
	t.Helper()
	code, out := h.send(t, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s %s: status %d, body %s", method, path, body, code, out)
	}
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, out)
	}
	return v
}

// The whole administrator's cycle against a real store: stage, review, commit, history, rollback, apply,
// discard.
func TestSettingsStageDiffCommitHistoryRollback(t *testing.T) {
	h := newFullHarness(t, nil)
	ctx := t.Context()

	got := decode[admin.Setting](t, h.harness, "PUT", "/api/v1/settings/Sender.EnableMTASTS", `{"value": "0"}`)
	want := admin.Setting{Key: "Sender.EnableMTASTS", Kind: "bool", Value: "true", Set: true, Default: "true",
		Help: got.Help, Staged: &admin.SettingChange{Key: "Sender.EnableMTASTS", Old: "true", OldSet: true,
			New: "false", NewSet: true, Default: "true"}}
	if diff := cmp.Diff(want, got); diff != "" || got.Help == "" {
		t.Errorf("PUT Sender.EnableMTASTS (-want +got):\n%s", diff)
	}
	// Domain keys are canonical: lower case A-labels.
	if got := decode[admin.Setting](t, h.harness, "PUT", "/api/v1/settings/Domain.B%C3%BCcher.Example.TLS", `{"value": "required"}`); got.Key != "Domain.xn--bcher-kva.example.TLS" || got.Kind != "tls-level" || got.Staged == nil {
		t.Errorf("PUT Domain.Bücher.Example.TLS = %+v", got)
	}
	if got := decode[admin.Setting](t, h.harness, "DELETE", "/api/v1/settings/TLSRPT.OrganizationName", ""); got.Staged == nil || got.Staged.NewSet {
		t.Errorf("DELETE TLSRPT.OrganizationName = %+v", got)
	}

	d := decode[admin.ConfigDiff](t, h.harness, "GET", "/api/v1/config/diff", "")
	wantDiff := admin.ConfigDiff{Generation: 1, Changes: []admin.SettingChange{
		{Key: "Domain.xn--bcher-kva.example.TLS", New: "required", NewSet: true},
		{Key: "Sender.EnableMTASTS", Old: "true", OldSet: true, New: "false", NewSet: true, Default: "true"},
		{Key: "TLSRPT.OrganizationName", Old: "Acme", OldSet: true},
	}}
	if diff := cmp.Diff(wantDiff, d); diff != "" {
		t.Errorf("diff (-want +got):\n%s", diff)
	}
	// Nothing is in force before the commit.
	if h.settings.Current().Bool("Sender.EnableMTASTS") != true {
		t.Fatal("staging changed the settings in force")
	}

	for _, body := range []string{"", `{}`, `{"note": "  "}`, `{"author": "ann"}`} {
		if code, out := h.send(t, "POST", "/api/v1/config/commit", body); code != 400 || !strings.Contains(out, "note") {
			t.Errorf("commit with %q: %d %s", body, code, out)
		}
	}
	c := decode[admin.CommitResult](t, h.harness, "POST", "/api/v1/config/commit", `{"note": "MTA-STS off for the migration", "author": "ann"}`)
	wantVals := map[string]string{"Sender.EnableMTASTS": "false", "Domain.xn--bcher-kva.example.TLS": "required"}
	if c.Generation != 2 || !cmp.Equal(c.Values, wantVals) {
		t.Errorf("commit = %+v", c)
	}
	if h.settings.Current().Bool("Sender.EnableMTASTS") || h.settings.Current().Generation != 2 {
		t.Errorf("commit is not in force: %+v", h.settings.Current())
	}
	if code, out := h.send(t, "POST", "/api/v1/config/commit", `{"note": "again"}`); code != 409 || !strings.Contains(out, "no staged changes") {
		t.Errorf("empty commit: %d %s", code, out)
	}
	if d := decode[admin.ConfigDiff](t, h.harness, "GET", "/api/v1/config/diff", ""); d.Generation != 2 || len(d.Changes) != 0 {
		t.Errorf("diff after commit = %+v", d)
	}

	hist := decode[[]admin.Generation](t, h.harness, "GET", "/api/v1/config/history", "")
	if len(hist) != 2 || hist[0].Generation != 2 || hist[0].Note != "MTA-STS off for the migration" || hist[0].Author != "ann" ||
		!hist[0].Committed.Equal(admintest.Now()) || hist[1].Generation != 1 || hist[1].Values["TLSRPT.OrganizationName"] != "Acme" {
		t.Errorf("history = %+v", hist)
	}

	rb := decode[admin.CommitResult](t, h.harness, "POST", "/api/v1/config/rollback", `{"generation": 1}`)
	if rb.Generation != 3 || rb.RollbackOf != 1 || rb.Values["Sender.EnableMTASTS"] != "true" {
		t.Errorf("rollback = %+v", rb)
	}
	if s := decode[admin.Setting](t, h.harness, "GET", "/api/v1/settings/TLSRPT.OrganizationName", ""); s.Value != "Acme" || !s.Set || s.Staged != nil {
		t.Errorf("after rollback: %+v", s)
	}
	hist = decode[[]admin.Generation](t, h.harness, "GET", "/api/v1/config/history", "")
	if len(hist) != 3 || hist[0].RollbackOf != 1 || hist[0].Note != "rollback to generation 1" || !strings.HasPrefix(hist[0].Author, "admin API from 127.0.0.1") {
		t.Errorf("history after rollback = %+v", hist[0])
	}
	if code, out := h.send(t, "POST", "/api/v1/config/rollback", `{"generation": 99, "note": "x"}`); code != 404 || !strings.Contains(out, "no such generation 99") {
		t.Errorf("rollback 99: %d %s", code, out)
	}

	// apply stages the whole document: what it lacks is removed.
	d = decode[admin.ConfigDiff](t, h.harness, "POST", "/api/v1/config/apply",
		`{"settings": {"Sender.EnableMTASTS": false, "TLSRPT.MaxDestinations": 2, "Domain.example.com.TLS": "required-verify"}}`)
	wantDiff = admin.ConfigDiff{Generation: 3, Changes: []admin.SettingChange{
		{Key: "Domain.example.com.TLS", New: "required-verify", NewSet: true},
		{Key: "Sender.EnableMTASTS", Old: "true", OldSet: true, New: "false", NewSet: true, Default: "true"},
		{Key: "TLSRPT.MaxDestinations", New: "2", NewSet: true, Default: "4"},
		{Key: "TLSRPT.OrganizationName", Old: "Acme", OldSet: true},
	}}
	if diff := cmp.Diff(wantDiff, d); diff != "" {
		t.Errorf("apply diff (-want +got):\n%s", diff)
	}
	list := decode[[]admin.Setting](t, h.harness, "GET", "/api/v1/settings", "")
	keys := map[string]admin.Setting{}
	for _, s := range list {
		keys[s.Key] = s
	}
	if len(list) != len(settings.Defs())+1 || keys["Domain.example.com.TLS"].Staged == nil || keys["Controller.EnableTLSRPT"].Value != "true" ||
		keys["Controller.EnableTLSRPT"].Set || keys["TLSRPT.MaxDestinations"].Staged.New != "2" {
		t.Errorf("list = %+v", list)
	}

	// discard answers what it dropped.
	if d := decode[admin.ConfigDiff](t, h.harness, "POST", "/api/v1/config/discard", ""); len(d.Changes) != 4 {
		t.Errorf("discard = %+v", d)
	}
	if changes, err := h.settings.Diff(ctx); err != nil || len(changes) != 0 {
		t.Errorf("after discard: %v, %v", changes, err)
	}
}

func TestSettingsErrors(t *testing.T) {
	h := newFullHarness(t, nil)
	tests := []struct {
		method, path, body string
		want               int
		wantErr            []string
	}{
		{"PUT", "/api/v1/settings/Sender.EnableMTA", `{"value": "true"}`, 400, []string{`unknown setting "Sender.EnableMTA"`}},
		{"PUT", "/api/v1/settings/Sender.EnableMTASTS", `{"value": "maybe"}`, 400, []string{"Sender.EnableMTASTS", `"maybe" is not a boolean`}},
		{"PUT", "/api/v1/settings/TLSRPT.MaxDestinations", `{"value": "-1"}`, 400, []string{"TLSRPT.MaxDestinations", "invalid value"}},
		{"PUT", "/api/v1/settings/Domain.example.com.TLS", `{"value": "strict"}`, 400, []string{"Domain.example.com.TLS", `unknown TLS level "strict"`}},
		{"PUT", "/api/v1/settings/Domain.a..b.TLS", `{"value": "none"}`, 400, []string{"Domain.a..b.TLS"}},
		{"PUT", "/api/v1/settings/Domain.example.com", `{"value": "none"}`, 400, []string{`unknown setting "Domain.example.com"`}},
		{"PUT", "/api/v1/settings/Sender.EnableMTASTS", `{}`, 400, []string{`"value" is required`}},
		{"PUT", "/api/v1/settings/Sender.EnableMTASTS", `{"valeu": "true"}`, 400, []string{`unknown field "valeu"`}},
		{"PUT", "/api/v1/settings/Sender.EnableMTASTS", `{"value": true}`, 400, []string{"request body"}},
		{"PUT", "/api/v1/settings/Sender.EnableMTASTS", `{"value": "true"} {}`, 400, []string{"more than one JSON value"}},
		{"GET", "/api/v1/settings/Nope", "", 400, []string{`unknown setting "Nope"`}},
		{"DELETE", "/api/v1/settings/Nope", "", 400, []string{`unknown setting "Nope"`}},
		{"POST", "/api/v1/config/apply", `{"settings": {"Sender.EnableMTASTS": "false", "Bogus.Key": "1", "TLSRPT.OnlyFailures": "often"}}`, 400,
			[]string{`unknown setting "Bogus.Key"`, "TLSRPT.OnlyFailures"}},
		{"POST", "/api/v1/config/apply", `{"settings": {"TLSRPT.MaxDestinations": 2.5}}`, 400, []string{"TLSRPT.MaxDestinations", "not an integer"}},
		{"POST", "/api/v1/config/apply", `{"settings": {"TLSRPT.From": ["a"]}}`, 400, []string{"TLSRPT.From", "want a string"}},
		{"POST", "/api/v1/config/apply", `{}`, 400, []string{`"settings" is required`}},
		{"POST", "/api/v1/config/commit", `{"note": "two\nlines"}`, 400, []string{"one line"}},
		{"POST", "/api/v1/config/commit", `{"note": "nothing staged"}`, 409, []string{"no staged changes"}},
		{"POST", "/api/v1/config/rollback", `{"generation": 0}`, 400, []string{`"generation"`}},
		{"POST", "/api/v1/config/rollback", `{"generation": "1"}`, 400, []string{"request body"}},
		{"POST", "/api/v1/config/rollback", `{"generation": 7}`, 404, []string{"no such generation 7"}},
		{"GET", "/api/v1/config/commit", "", 405, []string{"not allowed"}},
		{"POST", "/api/v1/settings", "", 405, []string{"not allowed"}},
	}
	for _, tt := range tests {
		code, body := h.send(t, tt.method, tt.path, tt.body)
		if code != tt.want {
			t.Errorf("%s %s %s: status %d, want %d (body %s)", tt.method, tt.path, tt.body, code, tt.want, body)
			continue
		}
		for _, w := range tt.wantErr {
			if got := errorOf(t, body); !strings.Contains(got, w) {
				t.Errorf("%s %s %s: error %q, want it to contain %q", tt.method, tt.path, tt.body, got, w)
			}
		}
	}
	// Nothing was staged by the failures, the invalid apply included.
	if changes, err := h.settings.Diff(t.Context()); err != nil || len(changes) != 0 {
		t.Errorf("failed requests staged %v, %v", changes, err)
	}
}

// newEndpoints lists the settings and TLS report routes, with bodies that would succeed.
func newEndpoints() []struct{ method, path, body string } {
	return []struct{ method, path, body string }{
		{"GET", "/api/v1/settings", ""},
		{"GET", "/api/v1/settings/Sender.EnableMTASTS", ""},
		{"PUT", "/api/v1/settings/Sender.EnableMTASTS", `{"value": "false"}`},
		{"DELETE", "/api/v1/settings/TLSRPT.OrganizationName", ""},
		{"GET", "/api/v1/config/diff", ""},
		{"POST", "/api/v1/config/apply", `{"settings": {"Sender.EnableMTASTS": false}}`},
		{"POST", "/api/v1/config/commit", `{"note": "n"}`},
		{"POST", "/api/v1/config/discard", ""},
		{"GET", "/api/v1/config/history", ""},
		{"POST", "/api/v1/config/rollback", `{"generation": 1}`},
		{"GET", "/api/v1/tlsrpt/lookup/example.org", ""},
		{"GET", "/api/v1/tlsrpt/pending", ""},
		{"GET", "/api/v1/tlsrpt/preview/example.net", ""},
		{"POST", "/api/v1/tlsrpt/send", `{"today": true}`},
		{"GET", "/api/v1/tlsrpt/sent", ""},
		{"GET", "/api/v1/tlsrpt/suppressions", ""},
		{"POST", "/api/v1/tlsrpt/suppressions", `{"entry": "x@example.org"}`},
		{"DELETE", "/api/v1/tlsrpt/suppressions/abuse@example.com", ""},
	}
}

func TestNewEndpointsNeedToken(t *testing.T) {
	h := newFullHarness(t, nil)
	for _, auth := range []string{"", "Bearer wrong-token-wrong-token", "Basic " + testToken} {
		for _, ep := range newEndpoints() {
			req, err := http.NewRequestWithContext(t.Context(), ep.method, h.srv.URL+ep.path, strings.NewReader(ep.body))
			if err != nil {
				t.Fatal(err)
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: status %d, want 401", ep.method, ep.path, auth, resp.StatusCode)
				continue
			}
			errorOf(t, string(b))
		}
	}
	if hist, err := h.settings.History(t.Context()); err != nil || len(hist) != 1 {
		t.Errorf("unauthorized requests committed: %d generations, %v", len(hist), err)
	}
	if changes, _ := h.settings.Diff(t.Context()); len(changes) != 0 {
		t.Errorf("unauthorized requests staged %v", changes)
	}
	if calls := h.reports.Calls(); len(calls) != 0 {
		t.Errorf("unauthorized requests reached the report sender: %v", calls)
	}

	// With the token, every one of them succeeds, in this order.
	for _, ep := range newEndpoints() {
		if code, body := h.send(t, ep.method, ep.path, ep.body); code != http.StatusOK {
			t.Errorf("%s %s with the token: %d %s", ep.method, ep.path, code, body)
		}
	}
}

// Without the collaborators the endpoints say so: 501.
func TestNewEndpointsNotAvailable(t *testing.T) {
	h := newHarness(t, nil)
	for _, ep := range newEndpoints() {
		code, body := h.send(t, ep.method, ep.path, ep.body)
		if code != http.StatusNotImplemented || !strings.Contains(errorOf(t, body), "not available") {
			t.Errorf("%s %s without collaborators: %d %s", ep.method, ep.path, code, body)
		}
	}
}

// While TLS reporting is off every report endpoint answers 409, whichever nil the daemon hands over; the
// live record lookup still works.
func TestTLSRPTOff(t *testing.T) {
	for name, off := range map[string]func() admin.ReportsAPI{
		"nil interface": func() admin.ReportsAPI { return nil },
		"nil *Reporter": func() admin.ReportsAPI { var r *tlsreport.Reporter; return r },
	} {
		h := newFullHarness(t, func(o *admin.Options) { o.Reports = off })
		for _, ep := range newEndpoints() {
			if !strings.HasPrefix(ep.path, "/api/v1/tlsrpt/") {
				continue
			}
			code, body := h.send(t, ep.method, ep.path, ep.body)
			if strings.HasPrefix(ep.path, "/api/v1/tlsrpt/lookup/") {
				if code != 200 {
					t.Errorf("%s: lookup while off: %d %s", name, code, body)
				}
				continue
			}
			if code != http.StatusConflict || errorOf(t, body) != "TLS reporting is off (Controller.EnableTLSRPT=false)" {
				t.Errorf("%s: %s %s: %d %s", name, ep.method, ep.path, code, body)
			}
		}
	}
}

func TestClientSettingsAndReports(t *testing.T) {
	h := newFullHarness(t, nil)
	ctx := t.Context()
	c := &admin.Client{BaseURL: h.srv.URL, Token: testToken, HTTP: h.srv.Client()}

	if s, err := c.SetSetting(ctx, "Domain.example.org.TLS", "required-verify"); err != nil || s.Staged == nil {
		t.Fatalf("SetSetting = %+v, %v", s, err)
	}
	if _, err := c.SetSetting(ctx, "Nope", "1"); !isStatus(err, 400) || !strings.Contains(err.Error(), `"Nope"`) {
		t.Errorf("SetSetting(Nope) = %v", err)
	}
	if s, err := c.UnsetSetting(ctx, "TLSRPT.OrganizationName"); err != nil || s.Staged == nil {
		t.Errorf("UnsetSetting = %+v, %v", s, err)
	}
	if d, err := c.ConfigDiff(ctx); err != nil || len(d.Changes) != 2 {
		t.Errorf("ConfigDiff = %+v, %v", d, err)
	}
	res, err := c.Commit(ctx, admin.CommitRequest{Note: "rule for example.org", Author: "bob"})
	if err != nil || res.Generation != 2 {
		t.Fatalf("Commit = %+v, %v", res, err)
	}
	if _, err := c.Commit(ctx, admin.CommitRequest{Note: "again"}); !isStatus(err, 409) {
		t.Errorf("empty Commit = %v", err)
	}
	if s, err := c.Setting(ctx, "Domain.EXAMPLE.org.TLS"); err != nil || s.Value != "required-verify" || !s.Set {
		t.Errorf("Setting = %+v, %v", s, err)
	}
	if list, err := c.Settings(ctx); err != nil || len(list) == 0 {
		t.Errorf("Settings = %+v, %v", list, err)
	}
	if hist, err := c.History(ctx); err != nil || len(hist) != 2 || hist[0].Author != "bob" {
		t.Errorf("History = %+v, %v", hist, err)
	}
	if res, err := c.Rollback(ctx, admin.RollbackRequest{Generation: 1, Note: "undo"}); err != nil || res.Generation != 3 || res.RollbackOf != 1 {
		t.Errorf("Rollback = %+v, %v", res, err)
	}
	if _, err := c.Rollback(ctx, admin.RollbackRequest{Generation: 42}); !admin.IsNotFound(err) {
		t.Errorf("Rollback(42) = %v", err)
	}
	// Generation 1's settings are in force (generation 3): no new generation.
	if res, err := c.Rollback(ctx, admin.RollbackRequest{Generation: 1}); err != nil || !res.InForce || res.Generation != 3 {
		t.Errorf("Rollback to the settings in force = %+v, %v; want in_force at 3", res, err)
	}
	// While a change is staged a rollback is refused, unless it discards the change, and says so.
	if _, err := c.SetSetting(ctx, "TLSRPT.OnlyFailures", "true"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rollback(ctx, admin.RollbackRequest{Generation: 2}); !isStatus(err, 409) || !strings.Contains(err.Error(), "TLSRPT.OnlyFailures") {
		t.Errorf("Rollback with a staged change = %v, want 409 naming it", err)
	}
	if res, err := c.Rollback(ctx, admin.RollbackRequest{Generation: 2, DiscardStaged: true}); err != nil || res.Generation != 4 || len(res.Discarded) != 1 || res.Discarded[0].Key != "TLSRPT.OnlyFailures" {
		t.Errorf("Rollback discarding = %+v, %v; want generation 4 and the discarded change", res, err)
	}
	if res, err := c.Rollback(ctx, admin.RollbackRequest{Generation: 1}); err != nil || res.Generation != 5 || res.InForce {
		t.Errorf("Rollback back to 1 = %+v, %v; want generation 5", res, err)
	}
	if d, err := c.Apply(ctx, map[string]string{"Sender.EnableMTASTS": "false", "TLSRPT.OrganizationName": "Acme"}); err != nil || len(d.Changes) != 1 {
		t.Errorf("Apply = %+v, %v", d, err)
	}
	if d, err := c.Discard(ctx); err != nil || len(d.Changes) != 1 {
		t.Errorf("Discard = %+v, %v", d, err)
	}

	if l, err := c.TLSRPTLookup(ctx, "Example.ORG"); err != nil || !l.Valid || len(l.RUA) != 2 {
		t.Errorf("TLSRPTLookup = %+v, %v", l, err)
	}
	if p, err := c.TLSRPTPending(ctx); err != nil || len(p) != 2 {
		t.Errorf("TLSRPTPending = %+v, %v", p, err)
	}
	if raw, err := c.TLSRPTPreview(ctx, "example.org", "2025-05-31"); err != nil || !strings.Contains(string(raw), `"report-id": "2025-05-31T00:00:00Z_example.org_r1"`) {
		t.Errorf("TLSRPTPreview = %s, %v", raw, err)
	}
	if r, err := c.TLSRPTSend(ctx, admin.SendRequest{Day: "2025-05-31"}); err != nil || len(r.Domains) != 1 || r.Domains[0].Deliveries[0].Status != "queued" {
		t.Errorf("TLSRPTSend = %+v, %v", r, err)
	}
	if s, err := c.TLSRPTSent(ctx); err != nil || len(s) != 1 {
		t.Errorf("TLSRPTSent = %+v, %v", s, err)
	}
	if err := c.Suppress(ctx, "https://reports.example.org/tlsrpt", "loops"); err != nil {
		t.Error(err)
	}
	if err := c.Unsuppress(ctx, "https://reports.example.org/tlsrpt"); err != nil {
		t.Error(err)
	}
	if l, err := c.Suppressions(ctx); err != nil || len(l) != 1 {
		t.Errorf("Suppressions = %+v, %v", l, err)
	}
}

func isStatus(err error, code int) bool {
	var ae *admin.APIError
	return errors.As(err, &ae) && ae.Status == code
}
