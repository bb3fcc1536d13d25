package mtastscache

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

const refreshFailedMsg = "mtastscache: policy refresh failed"

func refreshDue(t *testing.T, e *env) int {
	t.Helper()
	n, err := e.cache.RefreshDue(context.Background())
	if err != nil {
		t.Fatalf("RefreshDue: %v", err)
	}
	return n
}

func TestProactiveRefresh_STS59(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(7*24*3600))
	e.get("example.com")

	e.clock.Advance(23 * time.Hour)
	if n := refreshDue(t, e); n != 0 {
		t.Errorf("RefreshDue at 23 h refreshed %d, want 0", n)
	}
	// No traffic; 25 h after the fetch the policy is refreshed although the id is unchanged (Section 10.2).
	e.clock.Advance(2 * time.Hour)
	if n := refreshDue(t, e); n != 1 {
		t.Errorf("RefreshDue at 25 h refreshed %d, want 1", n)
	}
	checkFetches(t, e, "example.com", 2)
	entry, err := e.cache.Show(context.Background(), address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(25 * time.Hour); !entry.Fetched.Equal(want) || !entry.Expires.Equal(want.Add(7*24*time.Hour)) {
		t.Errorf("after refresh Fetched, Expires = %v, %v; want %v and 7 days later", entry.Fetched, entry.Expires, want)
	}
	// A refresh is not a use: LastUsed stays at the delivery's time.
	if !entry.LastUsed.Equal(t0) {
		t.Errorf("LastUsed = %v, want %v", entry.LastUsed, t0)
	}
	if st := e.cache.Stats(); st.Refreshes != 1 || st.Fetches != 2 {
		t.Errorf("Stats = %+v, want 1 refresh and 2 fetches", st)
	}
}

func TestRefreshHalfMaxAge_STS59(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(3600))
	e.get("example.com")
	e.clock.Advance(29 * time.Minute)
	if n := refreshDue(t, e); n != 0 {
		t.Errorf("RefreshDue at 29 min refreshed %d, want 0", n)
	}
	e.clock.Advance(time.Minute)
	if n := refreshDue(t, e); n != 1 {
		t.Errorf("RefreshDue at half of max_age refreshed %d, want 1", n)
	}
}

func TestRefreshFailureAlerts_STS60(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		wantLevel string
	}{
		{"enforce", pEnf(7 * 24 * 3600), "WARN"},
		{"testing", pTest, "WARN"},
		{"none", "version: STSv1\nmode: none\nmax_age: 604800\n", "INFO"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.publish("example.com", "1", tc.body)
			e.get("example.com")

			e.policy.serve("example.com", http.StatusInternalServerError, "")
			e.clock.Advance(25 * time.Hour)
			if n := refreshDue(t, e); n != 0 {
				t.Errorf("RefreshDue refreshed %d, want 0", n)
			}
			// Within the back-off the failed policy is not retried; after it, it is, and fails again.
			e.clock.Advance(time.Minute)
			refreshDue(t, e)
			e.clock.Advance(5 * time.Minute)
			refreshDue(t, e)
			checkFetches(t, e, "example.com", 3)

			recs := logRecords(t, e, refreshFailedMsg)
			if len(recs) != 2 {
				t.Fatalf("got %d %q log records, want 2", len(recs), refreshFailedMsg)
			}
			for _, r := range recs {
				if r["level"] != tc.wantLevel || r["domain"] != "example.com" || r["result_type"] != fetchError {
					t.Errorf("log record %v, want level %s for example.com with %s", r, tc.wantLevel, fetchError)
				}
			}
			if got := recs[1]["consecutive_failures"]; got != float64(2) {
				t.Errorf("consecutive_failures = %v, want 2", got)
			}
			entry, err := e.cache.Show(context.Background(), address.MustParseDomain("example.com"))
			if err != nil {
				t.Fatal(err)
			}
			if entry.ConsecutiveFailures != 2 || entry.LastError == "" || !entry.Fetched.Equal(t0) {
				t.Errorf("entry = %+v, want 2 failures, an error, and the t0 policy kept", entry)
			}
			if st := e.cache.Stats(); st.RefreshFailures != 2 || st.FetchFailures[tlsrpt.ResultSTSPolicyFetchError] != 2 {
				t.Errorf("Stats = %+v, want 2 refresh failures", st)
			}
			// The old policy still applies (same id, unexpired).
			got := e.get("example.com")
			if got.Policy == nil || got.ID != "1" || got.Source != SourceCache {
				t.Errorf("after failed refreshes: %+v, want the cached policy", sum(got))
			}

			// Failures are persisted and cleared by the next successful fetch.
			e.restart()
			if entry, _ := e.cache.Show(context.Background(), address.MustParseDomain("example.com")); entry.ConsecutiveFailures != 2 {
				t.Errorf("after restart ConsecutiveFailures = %d, want 2", entry.ConsecutiveFailures)
			}
			e.policy.serve("example.com", http.StatusOK, tc.body)
			entry, err = e.cache.Refresh(context.Background(), address.MustParseDomain("example.com"))
			if err != nil || entry.ConsecutiveFailures != 0 || entry.LastError != "" {
				t.Errorf("Refresh = %+v, %v; want a clean entry", entry, err)
			}
		})
	}
}

func TestRefreshTXTFailureKeepsPolicy_STS16_STS60(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(604800))
	e.get("example.com")
	e.dns.setErr("_mta-sts.example.com", dnsx.ErrTemporary)
	e.clock.Advance(25 * time.Hour)
	if n := refreshDue(t, e); n != 0 {
		t.Errorf("refreshed %d, want 0", n)
	}
	checkFetches(t, e, "example.com", 1)
	if recs := logRecords(t, e, refreshFailedMsg); len(recs) != 1 || recs[0]["level"] != "WARN" {
		t.Errorf("log records %v, want one warning", recs)
	}
	if got := e.get("example.com"); got.Policy == nil || got.Failure != tlsrpt.ResultSTSPolicyFetchError {
		t.Errorf("after failed refresh: %+v, want the cached policy with sts-policy-fetch-error", sum(got))
	}
}

func TestUnusedPoliciesAreNotRefreshedAndExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(31557600))
	e.publish("other.test", "1", pEnf(86400))
	e.get("example.com")
	e.get("other.test")
	// Keep example.com in use; other.test is never used again.
	for range 31 {
		e.clock.Advance(24 * time.Hour)
		e.get("example.com")
		refreshDue(t, e)
	}
	list, err := e.cache.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, en := range list {
		domains = append(domains, en.Domain.String())
	}
	if diff := cmp.Diff([]string{"example.com"}, domains); diff != "" {
		t.Errorf("cached domains after 31 days (-want +got):\n%s", diff)
	}
	e.restart()
	if _, err := e.cache.Show(context.Background(), address.MustParseDomain("other.test")); !errors.Is(err, ErrNotCached) {
		t.Errorf("other.test after restart: err = %v, want ErrNotCached", err)
	}
}

func TestAdminListShowRefreshFlush(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	example := address.MustParseDomain("example.com")
	e.publish("example.com", "1", pEnf(604800))
	e.publish("other.test", "7", pNone)

	if _, err := e.cache.Show(ctx, example); !errors.Is(err, ErrNotCached) {
		t.Errorf("Show before any use: err = %v, want ErrNotCached", err)
	}
	// Refresh works for a domain not cached yet.
	got, err := e.cache.Refresh(ctx, example)
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{
		Domain:  example,
		ID:      "1",
		Mode:    mtasts.ModeEnforce,
		MaxAge:  604800 * time.Second,
		MX:      []string{"mx1.example.com", "mx2.example.com"},
		Fetched: t0,
		Expires: t0.Add(604800 * time.Second),
		Policy:  pEnf(604800),
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(address.Domain{})); diff != "" {
		t.Errorf("Refresh (-want +got):\n%s", diff)
	}
	e.get("other.test")
	list, err := e.cache.List(ctx)
	if err != nil || len(list) != 2 || list[0].Domain != example || list[1].Mode != mtasts.ModeNone {
		t.Errorf("List = %+v, %v; want example.com then other.test", list, err)
	}

	// Refresh ignores the back-off that Get respects.
	e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=2")
	e.policy.serve("example.com", http.StatusInternalServerError, "")
	e.get("example.com")
	e.policy.serve("example.com", http.StatusOK, pTest)
	check(t, "Get during back-off", e.get("example.com"),
		summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache, Failure: fetchError})
	if got, err := e.cache.Refresh(ctx, example); err != nil || got.ID != "2" || got.Mode != mtasts.ModeTesting {
		t.Errorf("Refresh during back-off = %+v, %v; want the id 2 testing policy", got, err)
	}
	checkFetches(t, e, "example.com", 3)

	// A failing Refresh returns the error and keeps the policy.
	e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=1", "v=STSv1; id=2")
	if _, err := e.cache.Refresh(ctx, example); !errors.Is(err, mtasts.ErrMultipleRecords) {
		t.Errorf("Refresh with two records: err = %v, want ErrMultipleRecords", err)
	}
	if got, _ := e.cache.Show(ctx, example); got.ID != "2" || got.ConsecutiveFailures != 1 {
		t.Errorf("after failed Refresh: %+v, want id 2 kept with 1 failure", got)
	}

	if err := e.cache.Flush(ctx, example); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Flush(ctx, example); !errors.Is(err, ErrNotCached) {
		t.Errorf("second Flush: err = %v, want ErrNotCached", err)
	}
	e.restart()
	if _, err := e.cache.Show(ctx, example); !errors.Is(err, ErrNotCached) {
		t.Errorf("Show after Flush and restart: err = %v, want ErrNotCached", err)
	}
	if _, err := e.cache.Show(ctx, address.MustParseDomain("other.test")); err != nil {
		t.Errorf("other.test lost: %v", err)
	}
}

func TestRunRefreshesUntilCancelled_STS59(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(604800))
	e.get("example.com")
	e.clock.Advance(25 * time.Hour)

	c, err := New(context.Background(), Options{
		Store: e.st, Resolver: e.dns, Fetcher: e.fetcher, Now: e.clock.Now,
		RefreshInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	// Wait (bounded) for the background refresh to reach the policy host.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := e.policy.waitFetches(wctx, "example.com", 2); err != nil {
		t.Fatalf("Run did not refresh the policy: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
	if st := c.Stats(); st.Refreshes == 0 {
		t.Errorf("Stats.Refreshes = 0 after Run refreshed")
	}
}
