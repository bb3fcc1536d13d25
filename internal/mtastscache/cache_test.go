package mtastscache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/store/storetest"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

const (
	fetchError = string(tlsrpt.ResultSTSPolicyFetchError)
	invalid    = string(tlsrpt.ResultSTSPolicyInvalid)
	webpki     = string(tlsrpt.ResultSTSWebPKIInvalid)
)

func check(t *testing.T, what string, got Lookup, want summary) {
	t.Helper()
	if diff := cmp.Diff(want, sum(got)); diff != "" {
		t.Errorf("%s: lookup mismatch (-want +got):\n%s\ndetail: %s", what, diff, got.FailureDetail)
	}
}

func checkFetches(t *testing.T, e *env, domain string, want int) {
	t.Helper()
	if got := e.policy.fetches(domain); got != want {
		t.Errorf("HTTPS requests to mta-sts.%s = %d, want %d", domain, got, want)
	}
}

// discoveryFailures are the ways the TXT lookup can fail to give one valid record.
var discoveryFailures = []struct {
	name string
	set  func(d *fakeDNS, name string)
}{
	{"NXDOMAIN", func(d *fakeDNS, n string) { d.setErr(n, fmt.Errorf("%s: %w", n, dnsx.ErrNotFound)) }},
	{"SERVFAIL", func(d *fakeDNS, n string) { d.setErr(n, fmt.Errorf("%s: %w", n, dnsx.ErrTemporary)) }},
	{"NODATA", func(d *fakeDNS, n string) { d.setTXT(n) }},
	{"multiple", func(d *fakeDNS, n string) { d.setTXT(n, "v=STSv1; id=1", "v=STSv1; id=2") }},
	{"invalid", func(d *fakeDNS, n string) { d.setTXT(n, "v=STSv1; id=1; bogus") }},
}

func TestCachedPolicyOutlivesDiscoveryFailure_STS16_STS93(t *testing.T) {
	t.Parallel()
	for _, tc := range discoveryFailures {
		for _, body := range []string{pEnf(604800), pNone} {
			pol, err := mtasts.ParsePolicy([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			t.Run(tc.name+"/"+string(pol.Mode), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				e.publish("example.com", "20240101T000000", body)
				check(t, "first contact", e.get("example.com"),
					summary{Mode: pol.Mode, ID: "20240101T000000", Source: SourceFetched})

				tc.set(e.dns, "_mta-sts.example.com")
				e.policy.serve("example.com", http.StatusInternalServerError, "")
				e.clock.Advance(time.Hour)
				// STS-93: a failed discovery is reported while a cached policy is in force, unless it is mode none.
				want := summary{Mode: pol.Mode, ID: "20240101T000000", Source: SourceCache, Failure: fetchError}
				if pol.Mode == mtasts.ModeNone {
					want.Failure = ""
				}
				check(t, "TXT "+tc.name, e.get("example.com"), want)
				checkFetches(t, e, "example.com", 1)
			})
		}
	}
}

func TestNoRecordNoCacheNoFetch_STS12_STS13_STS18_STS19(t *testing.T) {
	t.Parallel()
	for _, tc := range discoveryFailures {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.policy.serve("example.com", http.StatusOK, pEnf(604800))
			tc.set(e.dns, "_mta-sts.example.com")
			if tc.name == "SERVFAIL" {
				// Spec: STS-19: a temporary failure with nothing cached is never "no policy": Get fails and the
				// delivery is deferred; nothing is fetched and nothing negative is cached.
				_, err := e.cache.Get(context.Background(), address.MustParseDomain("example.com"))
				if !errors.Is(err, ErrDiscoveryTemporary) {
					t.Fatalf("Get = %v, want ErrDiscoveryTemporary", err)
				}
				checkFetches(t, e, "example.com", 0)
				e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=1")
				check(t, "after DNS recovers", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
				return
			}
			got := e.get("example.com")
			check(t, "lookup", got, summary{Source: SourceNone})
			if got.FailureDetail == "" {
				t.Error("FailureDetail is empty, want the discovery error")
			}
			checkFetches(t, e, "example.com", 0)
		})
	}
	t.Run("no record at all", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.policy.serve("example.com", http.StatusOK, pEnf(604800))
		check(t, "lookup", e.get("example.com"), summary{Source: SourceNone})
		checkFetches(t, e, "example.com", 0)
		// Nothing negative is cached: a record published later is found on the next use.
		e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=1")
		check(t, "after publishing", e.get("example.com"),
			summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	})
}

func TestFetchFailureWithoutCacheMeansNoPolicy_STS34_STS92(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, domain string
		status       int
		body         string
		want         string
	}{
		{"HTTP 500", "example.com", http.StatusInternalServerError, "", fetchError},
		{"HTTP 404", "example.com", http.StatusNotFound, pEnf(604800), fetchError},
		{"invalid body", "example.com", http.StatusOK, pInvalid, invalid},
		{"certificate for another name", "untrusted.test", http.StatusOK, pEnf(604800), webpki},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.dns.setTXT("_mta-sts."+tc.domain, "v=STSv1; id=1")
			e.policy.serve(tc.domain, tc.status, tc.body)
			check(t, "lookup", e.get(tc.domain), summary{Source: SourceNone, Failure: tc.want})
			st := e.cache.Stats()
			if st.Fetches != 1 || st.FetchFailures[tlsrpt.ResultType(tc.want)] != 1 {
				t.Errorf("Stats = %+v, want 1 fetch failing with %s", st, tc.want)
			}
			if _, err := e.cache.Show(context.Background(), address.MustParseDomain(tc.domain)); !errors.Is(err, ErrNotCached) {
				t.Errorf("Show after failed first fetch: err = %v, want ErrNotCached", err)
			}
		})
	}
}

func TestFetchBackoffPerID_STS35(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=1")
	e.policy.serve("example.com", http.StatusInternalServerError, "")

	// Five messages within 60 s: one HTTPS request, and each attempt reports the failure.
	for i := range 5 {
		check(t, fmt.Sprintf("message %d", i+1), e.get("example.com"),
			summary{Source: SourceNone, Failure: fetchError})
		e.clock.Advance(15 * time.Second)
	}
	checkFetches(t, e, "example.com", 1)

	// Five minutes after the failure: one more request.
	e.clock.Advance(5*time.Minute - 75*time.Second)
	e.get("example.com")
	e.get("example.com")
	checkFetches(t, e, "example.com", 2)

	// A new id during the back-off is fetched at once; the back-off is per id.
	e.clock.Advance(time.Minute)
	e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=2")
	e.policy.serve("example.com", http.StatusOK, pEnf(604800))
	check(t, "new id", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "2", Source: SourceFetched})
	checkFetches(t, e, "example.com", 3)
}

func TestCachedForMaxAgeThenExpired_STS53_STS54(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(3600))
	e.get("example.com")

	e.dns.setErr("_mta-sts.example.com", dnsx.ErrTemporary)
	e.policy.serve("example.com", http.StatusInternalServerError, "")
	e.clock.Advance(3599 * time.Second)
	got := e.get("example.com")
	check(t, "t0+3599s", got, summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache, Failure: fetchError})
	if want := t0.Add(time.Hour); !got.Expires.Equal(want) || !got.Fetched.Equal(t0) {
		t.Errorf("Fetched, Expires = %v, %v; want %v, %v", got.Fetched, got.Expires, t0, want)
	}

	e.clock.Advance(2 * time.Second)
	// STS-54: the expired policy is never applied. Spec: STS-19: with the TXT lookup failing temporarily and
	// no unexpired policy, the attempt is deferred rather than sent as though there were no policy.
	if _, err := e.cache.Get(context.Background(), address.MustParseDomain("example.com")); !errors.Is(err, ErrDiscoveryTemporary) {
		t.Fatalf("t0+3601s, TXT failing: Get = %v, want ErrDiscoveryTemporary", err)
	}
	e.dns.setErr("_mta-sts.example.com", fmt.Errorf("%w", dnsx.ErrNotFound))
	check(t, "t0+3601s, TXT gone", e.get("example.com"), summary{Source: SourceNone})

	// The same id with the policy host failing: the expired policy is refetched, the fetch fails, and the
	// expired policy is still not applied.
	e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=1")
	check(t, "t0+3601s, HTTPS failing", e.get("example.com"), summary{Source: SourceNone, Failure: fetchError})
	checkFetches(t, e, "example.com", 2)
	if st := e.cache.Stats(); st.Expired != 1 || len(st.Entries) != 0 {
		t.Errorf("Stats: Expired = %d, Entries = %v; want 1 expired and none live", st.Expired, st.Entries)
	}
}

func TestSameIDNoRefetch_STS55(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(604800))
	check(t, "message 1", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	for i := 2; i <= 10; i++ {
		e.clock.Advance(time.Hour)
		check(t, fmt.Sprintf("message %d", i), e.get("example.com"),
			summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache})
	}
	checkFetches(t, e, "example.com", 1)
	// Section 5.1: the TXT record is still checked on every use.
	if got := e.dns.queryCount("_mta-sts.example.com"); got != 10 {
		t.Errorf("TXT queries = %d, want 10", got)
	}
}

func TestNewIDFetchedAndUsedAtOnce_STS56_STS84(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(604800))
	first := e.get("example.com")

	// Well within max_age, the domain moves to mx3 and changes the id.
	e.clock.Advance(6 * 24 * time.Hour)
	e.publish("example.com", "2", "version: STSv1\nmode: enforce\nmx: mx3.example.com\nmax_age: 604800\n")
	got := e.get("example.com")
	check(t, "after id change", got, summary{Mode: mtasts.ModeEnforce, ID: "2", Source: SourceFetched})
	if !got.Policy.Matches("mx3.example.com") || got.Policy.Matches("mx1.example.com") {
		t.Errorf("new policy MX = %v, want only mx3.example.com", got.Policy.MX)
	}
	if !first.Policy.Matches("mx1.example.com") {
		t.Error("the Lookup returned earlier was modified")
	}
	checkFetches(t, e, "example.com", 2)
	check(t, "next use", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "2", Source: SourceCache})
}

func TestFailedRefetchKeepsCachedPolicy_STS57(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"HTTP 500", http.StatusInternalServerError, "", fetchError},
		{"invalid policy", http.StatusOK, pInvalid, invalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.publish("example.com", "1", pEnf(604800))
			e.get("example.com")

			e.clock.Advance(time.Hour)
			e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=2")
			e.policy.serve("example.com", tc.status, tc.body)
			got := e.get("example.com")
			check(t, "id changed, fetch fails", got,
				summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache, Failure: tc.want})
			if !got.Policy.Matches("mx1.example.com") {
				t.Errorf("cached policy not applied: %v", got.Policy.MX)
			}
			// Back off for 5 min for id 2, still enforcing the cached policy and reporting the failure.
			e.clock.Advance(4 * time.Minute)
			check(t, "during back-off", e.get("example.com"),
				summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache, Failure: tc.want})
			checkFetches(t, e, "example.com", 2)
			entry, err := e.cache.Show(context.Background(), address.MustParseDomain("example.com"))
			if err != nil || entry.ID != "1" || entry.Policy != pEnf(604800) {
				t.Errorf("Show = %+v, %v; want the id 1 policy", entry, err)
			}
		})
	}
}

// RFC 8461 Section 3.3 (STS-57): the back-off after a failed fetch for a new id lasts 5 minutes on the
// injected clock: no fetch a second before it ends, a fetch as it ends (which, failing again, backs off
// again), and the new policy taken once its host serves it.
func TestFailureBackoffEndsAfterFiveMinutes_STS57(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(604800))
	e.get("example.com")
	e.clock.Advance(time.Hour)
	e.dns.setTXT("_mta-sts.example.com", "v=STSv1; id=2")
	e.policy.serve("example.com", http.StatusInternalServerError, "")
	backingOff := summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache, Failure: fetchError}
	check(t, "id 2 fails", e.get("example.com"), backingOff)
	checkFetches(t, e, "example.com", 2)

	e.clock.Advance(5*time.Minute - time.Second)
	check(t, "4m59s later", e.get("example.com"), backingOff)
	checkFetches(t, e, "example.com", 2)
	e.clock.Advance(time.Second)
	check(t, "5m later, still failing", e.get("example.com"), backingOff)
	checkFetches(t, e, "example.com", 3)

	e.policy.serve("example.com", http.StatusOK, pEnf(86400))
	e.clock.Advance(5*time.Minute - time.Second)
	check(t, "the second back-off", e.get("example.com"), backingOff)
	checkFetches(t, e, "example.com", 3)
	e.clock.Advance(time.Second)
	check(t, "the second back-off over", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "2", Source: SourceFetched})
	checkFetches(t, e, "example.com", 4)
}

func TestRefetchRestartsLifetime_STS58(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(3600))
	e.get("example.com")
	e.clock.Advance(1800 * time.Second)
	e.publish("example.com", "2", pEnf(3600))
	check(t, "t0+1800s", e.get("example.com"), summary{Mode: mtasts.ModeEnforce, ID: "2", Source: SourceFetched})

	e.dns.setErr("_mta-sts.example.com", dnsx.ErrTemporary)
	e.policy.serve("example.com", http.StatusInternalServerError, "")
	e.clock.Advance(3200 * time.Second)
	check(t, "t0+5000s", e.get("example.com"),
		summary{Mode: mtasts.ModeEnforce, ID: "2", Source: SourceCache, Failure: fetchError})
	e.clock.Advance(401 * time.Second)
	if _, err := e.cache.Get(context.Background(), address.MustParseDomain("example.com")); !errors.Is(err, ErrDiscoveryTemporary) {
		t.Fatalf("t0+5401s: Get = %v, want ErrDiscoveryTemporary (expired, and DNS failing)", err)
	}
	e.dns.setTXT("_mta-sts.example.com")
	check(t, "t0+5401s, no record", e.get("example.com"), summary{Source: SourceNone})
}

func TestNoneReplacesEnforce_STS61(t *testing.T) {
	t.Parallel()
	for _, from := range []string{pEnf(604800), pTest} {
		e := newEnv(t)
		e.publish("example.com", "1", from)
		e.get("example.com")
		e.clock.Advance(time.Hour)
		e.publish("example.com", "2", pNone)
		check(t, "after mode none", e.get("example.com"), summary{Mode: mtasts.ModeNone, ID: "2", Source: SourceFetched})
		if st := e.cache.Stats(); !cmp.Equal(st.Entries, map[mtasts.Mode]int{mtasts.ModeNone: 1}) {
			t.Errorf("Stats.Entries = %v, want one none policy", st.Entries)
		}
		e.restart()
		e.dns.setErr("_mta-sts.example.com", dnsx.ErrTemporary)
		check(t, "after restart", e.get("example.com"), summary{Mode: mtasts.ModeNone, ID: "2", Source: SourceCache})
	}
}

func TestCacheKeyedOnExactDomain_STS62(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(604800))
	e.get("example.com")

	check(t, "sub.example.com without a record", e.get("sub.example.com"), summary{Source: SourceNone})
	if n := e.dns.queryCount("_mta-sts.example.com"); n != 1 {
		t.Errorf("TXT queries for the parent = %d, want 1 (only its own lookup)", n)
	}
	checkFetches(t, e, "sub.example.com", 0)

	e.publish("sub.example.com", "9", pTest)
	check(t, "sub.example.com with its own policy", e.get("sub.example.com"),
		summary{Mode: mtasts.ModeTesting, ID: "9", Source: SourceFetched})
	check(t, "example.com unaffected", e.get("example.com"),
		summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache})
}

// TestPersistsAcrossRestart_STS63 runs on both stores: the node's SQLite database and the PostgreSQL
// database of a cluster.
func TestPersistsAcrossRestart_STS63(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); persistsAcrossRestart(t, newEnv(t)) })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); persistsAcrossRestart(t, newEnvOn(t, storetest.PostgresDSN(t))) })
}

func persistsAcrossRestart(t *testing.T, e *env) {
	e.publish("example.com", "1", pEnf(604800))
	e.get("example.com")
	e.clock.Advance(time.Hour)
	e.get("example.com") // used again: last_used = t0+1h, written lazily
	if _, err := e.cache.RefreshDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	before, err := e.cache.Show(context.Background(), address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}

	e.restart()
	e.dns.setErr("_mta-sts.example.com", dnsx.ErrTemporary)
	e.policy.srv.Close() // HTTPS blocked too
	after, err := e.cache.Show(context.Background(), address.MustParseDomain("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after, cmp.AllowUnexported(address.Domain{})); diff != "" {
		t.Errorf("entry changed across restart (-before +after):\n%s", diff)
	}
	if !after.LastUsed.Equal(t0.Add(time.Hour)) {
		t.Errorf("LastUsed = %v, want %v", after.LastUsed, t0.Add(time.Hour))
	}
	got := e.get("example.com")
	check(t, "after restart", got, summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceCache, Failure: fetchError})
	if !got.Policy.Matches("mx2.example.com") {
		t.Errorf("restored policy MX = %v", got.Policy.MX)
	}
}

func TestEquivalentRecordDoesNotRefetch_STS10_STS14(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.policy.serve("example.com", http.StatusOK, pEnf(604800))
	// STS-10: the first id counts; STS-14: the resolver joins a record's strings without spaces, so
	// "v=STSv1; id=12" "34" arrives as below. Each change keeps the id, so none refetches.
	records := []string{
		"v=STSv1; id=aaa; id=bbb",
		"v=STSv1; id=aaa; id=ccc",
		"v=STSv1;id=aaa",
		"v=STSv1; id=aaa; ext=foo",
	}
	for _, r := range records {
		e.dns.setTXT("_mta-sts.example.com", r)
		got := e.get("example.com")
		if got.ID != "aaa" || got.Policy == nil {
			t.Errorf("record %q: ID = %q, policy %v; want the id aaa policy", r, got.ID, got.Policy)
		}
	}
	checkFetches(t, e, "example.com", 1)
}

func TestConcurrentGetsShareOneFetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("new.test", "1", pEnf(604800))
	gate := make(chan struct{})
	e.dns.mu.Lock()
	e.dns.gate = gate
	e.dns.mu.Unlock()

	const n = 10
	domain := address.MustParseDomain("new.test")
	results := make([]Lookup, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			l, err := e.cache.Get(context.Background(), domain)
			if err != nil {
				t.Error(err)
			}
			results[i] = l
		})
	}
	// Wait (bounded) until all ten callers share the flight held up at the TXT lookup, then let it go. The
	// flight exists once the first caller asked the (gated) resolver.
	deadline := time.After(10 * time.Second)
	select {
	case <-e.dns.asked:
	case <-deadline:
		t.Fatal("no Get reached the TXT lookup")
	}
	for {
		e.cache.mu.Lock()
		f := e.cache.flights[domain]
		joined, next := f.waiters == n, f.joined
		e.cache.mu.Unlock()
		if joined {
			break
		}
		select {
		case <-next:
		case <-deadline:
			t.Fatal("the ten Gets did not join one flight")
		}
	}
	close(gate)
	wg.Wait()
	for i, l := range results {
		check(t, fmt.Sprintf("caller %d", i), l, summary{Mode: mtasts.ModeEnforce, ID: "1", Source: SourceFetched})
	}
	checkFetches(t, e, "new.test", 1)
	if got := e.dns.queryCount("_mta-sts.new.test"); got != 1 {
		t.Errorf("TXT queries = %d, want 1", got)
	}
}

func TestGetReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish("example.com", "1", pEnf(604800))
	gate := make(chan struct{})
	e.dns.mu.Lock()
	e.dns.gate = gate
	e.dns.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.cache.Get(ctx, address.MustParseDomain("example.com")); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: err = %v, want context.Canceled", err)
	}
	// The shared lookup goes on without the caller, and its result serves the next one.
	close(gate)
	// The next Get either joins that flight or finds its result cached; either way there was one fetch.
	if got := e.get("example.com"); mode(got) != mtasts.ModeEnforce || got.ID != "1" {
		t.Errorf("next Get = %+v, want the id 1 enforce policy", sum(got))
	}
	checkFetches(t, e, "example.com", 1)
}

// logRecords returns the JSON log records with the given message.
func logRecords(t *testing.T, e *env, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(e.logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
