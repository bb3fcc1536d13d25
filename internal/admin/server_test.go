package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/admin/admintest"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
)

const testToken = "0123456789abcdef0123456789abcdef"

type harness struct {
	srv   *httptest.Server
	queue *admintest.Queue
	sts   *admintest.STSCache
}

// newHarness serves the API over the fixture; edit changes the options before New.
func newHarness(t *testing.T, edit func(*admin.Options)) *harness {
	t.Helper()
	q, c := admintest.Fixture()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "mxgate_test_gauge", Help: "test"})
	g.Set(7)
	reg.MustRegister(g)
	o := admin.Options{
		Token: testToken,
		Queue: q,
		STS:   c,
		Explain: func(ctx context.Context, req delivery.PlanRequest) (delivery.Explanation, error) {
			return delivery.Explanation{Domain: req.Domain.String(), RequireTLS: req.RequireTLS, Source: "mta-sts"}, nil
		},
		Status: func(ctx context.Context) (admin.Status, error) {
			return admin.Status{Node: "n1", Generation: admin.StatusGeneration{Committed: 3, Running: 3}}, nil
		},
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Now:     admintest.Now,
	}
	if edit != nil {
		edit(&o)
	}
	s, err := admin.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &harness{srv: srv, queue: q, sts: c}
}

// do sends a request with the given Authorization header ("" for none) and returns status and body.
func (h *harness) do(t *testing.T, method, path, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.srv.URL+path, nil)
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
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error", body)
	}
	return e.Error
}

type endpoint struct{ method, path string }

// endpoints lists every route (the mutating ones on fixture data that exists).
func endpoints() []endpoint {
	return []endpoint{
		{"GET", "/readyz"},
		{"GET", "/metrics"},
		{"GET", "/api/v1/queue"},
		{"GET", "/api/v1/queue?domain=example.org&state=queued&held=false&limit=5"},
		{"GET", "/api/v1/queue/summary"},
		{"GET", "/api/v1/queue/" + admintest.MsgQueued},
		{"POST", "/api/v1/queue/" + admintest.MsgQueued + "/retry"},
		{"POST", "/api/v1/queue/" + admintest.MsgQueued + "/hold"},
		{"POST", "/api/v1/queue/" + admintest.MsgHeld + "/release"},
		{"POST", "/api/v1/queue/" + admintest.MsgQueued + "/bounce"},
		{"DELETE", "/api/v1/queue/" + admintest.MsgHeld},
		{"GET", "/api/v1/sts/cache"},
		{"GET", "/api/v1/sts/cache/example.org"},
		{"POST", "/api/v1/sts/cache/example.com/refresh"},
		{"DELETE", "/api/v1/sts/cache/example.net"},
		{"GET", "/api/v1/policy/example.org"},
		{"GET", "/api/v1/status"},
	}
}

func TestEveryEndpointWithToken(t *testing.T) {
	h := newHarness(t, nil)
	wantBody := map[string]string{
		"/readyz":  `"status": "ready"`,
		"/metrics": "mxgate_test_gauge 7",
		"/api/v1/queue?domain=example.org&state=queued&held=false&limit=5": admintest.MsgQueued,
		"/api/v1/queue/summary":                           `"oldest_age_seconds": 7200`,
		"/api/v1/queue/" + admintest.MsgQueued:            `"result_type": "certificate-host-mismatch"`,
		"/api/v1/queue/" + admintest.MsgQueued + "/retry": `"action": "retry"`,
		"/api/v1/queue/" + admintest.MsgHeld:              `"action": "delete"`,
		"/api/v1/sts/cache":                               `"domain": "example.net"`,
		"/api/v1/sts/cache/example.org":                   `"max_age_seconds": 604800`,
		"/api/v1/sts/cache/example.com/refresh":           `"fetched": "2025-06-01T10:00:00Z"`,
		"/api/v1/sts/cache/example.net":                   `"action": "flush"`,
		"/api/v1/policy/example.org":                      `"source": "mta-sts"`,
		"/api/v1/status":                                  `"committed": 3`,
	}
	for _, ep := range endpoints() {
		code, hdr, body := h.do(t, ep.method, ep.path, "Bearer "+testToken)
		if code != http.StatusOK {
			t.Errorf("%s %s: status %d, body %s", ep.method, ep.path, code, body)
			continue
		}
		if want := wantBody[ep.path]; !strings.Contains(body, want) {
			t.Errorf("%s %s: body %s does not contain %q", ep.method, ep.path, body, want)
		}
		if ep.path != "/metrics" && !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: Content-Type %q", ep.method, ep.path, hdr.Get("Content-Type"))
		}
	}
	want := []string{"retry " + admintest.MsgQueued, "hold " + admintest.MsgQueued, "release " + admintest.MsgHeld,
		"bounce " + admintest.MsgQueued, "delete " + admintest.MsgHeld}
	if diff := cmp.Diff(want, h.queue.Calls()); diff != "" {
		t.Errorf("queue calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"refresh example.com", "flush example.net"}, h.sts.Calls()); diff != "" {
		t.Errorf("sts calls (-want +got):\n%s", diff)
	}
	wantFilter := queue.Filter{Domain: "example.org", State: "queued", Limit: 5}
	if diff := cmp.Diff(wantFilter, h.queue.LastFilter()); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
}

func TestEveryEndpointButHealthzNeedsToken(t *testing.T) {
	h := newHarness(t, nil)
	eps := append(endpoints(), endpoint{"GET", "/no/such/endpoint"}, endpoint{"PUT", "/api/v1/queue"})
	for _, auth := range []string{"", "Bearer wrong-token-wrong-token", "Bearer " + testToken + "x",
		"Basic " + testToken, "Bearer", testToken} {
		for _, ep := range eps {
			code, hdr, body := h.do(t, ep.method, ep.path, auth)
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: status %d, want 401", ep.method, ep.path, auth, code)
				continue
			}
			errorOf(t, body)
			if got := hdr.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s %s: WWW-Authenticate %q", ep.method, ep.path, got)
			}
		}
	}
	if diff := cmp.Diff([]string(nil), h.queue.Calls()); diff != "" {
		t.Errorf("unauthorized requests changed the queue:\n%s", diff)
	}
	code, _, body := h.do(t, "GET", "/healthz", "")
	if code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("GET /healthz without token: %d %s", code, body)
	}
	// The scheme is case-insensitive (RFC 7235 Section 2.1).
	if code, _, _ := h.do(t, "GET", "/api/v1/status", "bearer "+testToken); code != http.StatusOK {
		t.Errorf("lower-case bearer scheme: status %d", code)
	}
}

func TestErrorStatus(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		method, path string
		want         int
		wantErr      string
	}{
		{"GET", "/api/v1/queue/0000000000000000000000000v", 404, "message not found"},
		{"POST", "/api/v1/queue/nope/retry", 404, "message not found: nope"},
		{"POST", "/api/v1/queue/nope/hold", 404, "message not found"},
		{"POST", "/api/v1/queue/nope/release", 404, "message not found"},
		{"POST", "/api/v1/queue/nope/bounce", 404, "message not found"},
		{"DELETE", "/api/v1/queue/nope", 404, "message not found"},
		{"GET", "/api/v1/sts/cache/unknown.example", 404, "no cached policy"},
		{"DELETE", "/api/v1/sts/cache/unknown.example", 404, "no cached policy"},
		{"GET", "/api/v1/nothing", 404, "no such endpoint"},
		{"GET", "/api/v1/queue/" + admintest.MsgQueued + "/retry", 405, "method GET not allowed"},
		{"PUT", "/api/v1/queue/x", 405, "not allowed"},
		{"GET", "/api/v1/queue?state=deferred", 400, `invalid state parameter "deferred"`},
		{"GET", "/api/v1/queue?held=maybe", 400, `invalid held parameter "maybe"`},
		{"GET", "/api/v1/queue?limit=0", 400, `invalid limit parameter "0"`},
		{"GET", "/api/v1/queue?limit=ten", 400, `invalid limit parameter "ten"`},
		{"GET", "/api/v1/queue?limit=10001", 400, "invalid limit parameter"},
		{"GET", "/api/v1/queue?domian=example.org", 400, `unknown query parameter "domian"`},
		{"GET", "/api/v1/queue?domain=a..b", 400, "invalid domain parameter"},
		{"GET", "/api/v1/queue?state=queued&state=failed", 400, `"state" given 2 times`},
		{"GET", "/api/v1/queue/a%20b", 400, `invalid message id "a b"`},
		{"POST", "/api/v1/queue/a%21/hold", 400, "invalid message id"},
		{"GET", "/api/v1/sts/cache/bad_domain%21", 400, "invalid domain"},
		{"POST", "/api/v1/sts/cache/-x-/refresh", 400, "invalid domain"},
		{"GET", "/api/v1/policy/a..b", 400, "invalid domain"},
		{"POST", "/api/v1/sts/cache/unfetchable.example/refresh", 500, "no policy to fetch"},
	}
	for _, tt := range tests {
		code, hdr, body := h.do(t, tt.method, tt.path, "Bearer "+testToken)
		if code != tt.want {
			t.Errorf("%s %s: status %d, want %d (body %s)", tt.method, tt.path, code, tt.want, body)
			continue
		}
		if got := errorOf(t, body); !strings.Contains(got, tt.wantErr) {
			t.Errorf("%s %s: error %q, want it to contain %q", tt.method, tt.path, got, tt.wantErr)
		}
		if code == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tt.method, tt.path)
		}
	}
}

func TestUpstreamAndMissingCollaborators(t *testing.T) {
	h := newHarness(t, func(o *admin.Options) {
		o.Explain, o.Status = nil, nil
		o.Ready = func(context.Context) error { return errors.New("spool not writable") }
	})
	h.sts.RefreshErr = fmt.Errorf("mtastscache: fetch policy for example.com: %w: GET: 404", mtasts.ErrFetch)
	tests := []struct {
		path, method string
		want         int
		wantErr      string
	}{
		{"/api/v1/sts/cache/example.com/refresh", "POST", 502, "policy fetch failed"},
		{"/api/v1/policy/example.org", "GET", 501, "not available"},
		{"/api/v1/status", "GET", 501, "not available"},
		{"/readyz", "GET", 503, "not ready: spool not writable"},
	}
	for _, tt := range tests {
		code, _, body := h.do(t, tt.method, tt.path, "Bearer "+testToken)
		if code != tt.want || !strings.Contains(errorOf(t, body), tt.wantErr) {
			t.Errorf("%s %s: %d %s, want %d with %q", tt.method, tt.path, code, body, tt.want, tt.wantErr)
		}
	}
	h.queue.Err = errors.New("queue: list: database is locked")
	if code, _, body := h.do(t, "GET", "/api/v1/queue", "Bearer "+testToken); code != 500 || !strings.Contains(body, "database is locked") {
		t.Errorf("queue failure: %d %s", code, body)
	}
}

func TestSTSEntryJSON(t *testing.T) {
	h := newHarness(t, nil)
	_, _, body := h.do(t, "GET", "/api/v1/sts/cache/example.net", "Bearer "+testToken)
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"domain":               "example.net",
		"id":                   "old1",
		"mode":                 "testing",
		"max_age_seconds":      3600.0,
		"mx":                   []any{"mx.example.net"},
		"fetched":              "2025-06-01T07:00:00Z",
		"expires":              "2025-06-01T08:00:00Z",
		"expired":              true,
		"last_error":           "sts-policy-fetch-error: GET https://mta-sts.example.net/.well-known/mta-sts.txt: 404",
		"last_error_at":        "2025-06-01T09:30:00Z",
		"consecutive_failures": 3.0,
		"policy":               "version: STSv1\nmode: testing\nmx: mx.example.net\nmax_age: 3600\n",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entry JSON (-want +got):\n%s", diff)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	q, c := admintest.Fixture()
	for _, o := range []admin.Options{
		{Token: "short", Queue: q, STS: c},
		{Token: testToken, STS: c},
		{Token: testToken, Queue: q},
	} {
		if _, err := admin.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestClient(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	c := &admin.Client{BaseURL: h.srv.URL + "/", Token: testToken, HTTP: h.srv.Client()}

	list, err := c.ListQueue(ctx, admin.QueueFilter{HeldOnly: true})
	if err != nil || len(list) != 1 || list[0].ID != admintest.MsgHeld {
		t.Fatalf("ListQueue(held) = %+v, %v", list, err)
	}
	m, err := c.Message(ctx, admintest.MsgQueued)
	if err != nil {
		t.Fatal(err)
	}
	if want := admintest.Now().Add(-2 * time.Hour); !m.Received.Equal(want) || len(m.Timeline) != 2 || m.Recipients[0].Addr != "bob@example.org" {
		t.Errorf("Message = %+v", m)
	}
	sum, err := c.QueueSummary(ctx)
	if err != nil || sum.Messages != 2 || sum.QueuedByDomain["example.net"] != 1 {
		t.Errorf("QueueSummary = %+v, %v", sum, err)
	}
	for _, f := range []func(context.Context, string) error{c.Retry, c.Hold, c.Release, c.Bounce, c.Delete} {
		if err := f(ctx, admintest.MsgQueued); err != nil {
			t.Error(err)
		}
	}
	err = c.Retry(ctx, "nope")
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || !admin.IsNotFound(err) || ae.Error() != "queue: message not found: nope" {
		t.Errorf("Retry(nope) = %v", err)
	}
	e, err := c.STSRefresh(ctx, "EXAMPLE.com.")
	if err != nil || e.Domain != "example.com" || e.Mode != "enforce" || e.Expired {
		t.Errorf("STSRefresh = %+v, %v", e, err)
	}
	if e, err := c.STSShow(ctx, "example.org"); err != nil || e.MaxAgeSeconds != 604800 {
		t.Errorf("STSShow = %+v, %v", e, err)
	}
	if err := c.STSFlush(ctx, "example.org"); err != nil {
		t.Error(err)
	}
	entries, err := c.STSCache(ctx)
	if err != nil || len(entries) != 2 || entries[0].Domain != "example.com" || entries[1].Domain != "example.net" {
		t.Errorf("STSCache = %+v, %v", entries, err)
	}
	if e, err := c.Explain(ctx, "example.org"); err != nil || e.Source != "mta-sts" || e.Domain != "example.org" {
		t.Errorf("Explain = %+v, %v", e, err)
	}
	if st, err := c.Status(ctx); err != nil || st.Node != "n1" || st.Generation.Committed != 3 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	bad := &admin.Client{BaseURL: h.srv.URL, Token: "wrong", HTTP: h.srv.Client()}
	if _, err := bad.Status(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("Status with a wrong token = %v", err)
	}
}

func TestServeShutsDownOnCancel(t *testing.T) {
	q, c := admintest.Fixture()
	s, err := admin.New(admin.Options{Token: testToken, Queue: q, STS: c})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// The real collaborators satisfy the interfaces.
var (
	_ admin.QueueAPI    = (*queue.Queue)(nil)
	_ admin.STSCacheAPI = (*mtastscache.Cache)(nil)
)

// TestPolicyExplainLiteralAndRequireTLS: the explain endpoint takes address literals (canonical form, as the
// queue writes them) and ?requiretls=true, and refuses a malformed flag or literal.
func TestPolicyExplainLiteralAndRequireTLS(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/policy/[192.0.2.1]?requiretls=true", 200, `"domain": "[192.0.2.1]"`},
		{"/api/v1/policy/[IPv6:2001:DB8::1]", 200, `"domain": "[IPv6:2001:db8::1]"`},
		{"/api/v1/policy/example.org?requiretls=true", 200, `"requiretls": true`},
		{"/api/v1/policy/example.org?requiretls=yes", 400, `requiretls: \"yes\" is not true or false`},
		{"/api/v1/policy/[300.1.1.1]", 400, "invalid domain"},
	} {
		code, _, body := h.do(t, http.MethodGet, tc.path, "Bearer "+testToken)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %s, want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
	}
}
