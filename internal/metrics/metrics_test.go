package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/dnsx/dnstest"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/smtpserver"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/version"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: HTTP %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestMetricsExposition(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	m := New(Sources{
		Queue: func(context.Context) (QueueStats, error) {
			return QueueStats{Messages: 3, Recipients: 5, BatchesInFlight: 1, Oldest: now.Add(-90 * time.Second)}, nil
		},
		STSCache: func() (map[string]int, map[string]uint64) {
			return map[string]int{"enforce": 2, "testing": 1}, map[string]uint64{"ok": 4, "sts-policy-fetch-error": 1}
		},
		Generations: func() (int, int) { return 7, 7 },
		Reports: func(context.Context) (map[[2]string]int, error) {
			return map[[2]string]int{{"mailto", "queued"}: 3, {"https", "failed"}: 1}, nil
		},
		Build: version.Info{Version: "v1.2.3", Revision: "abc", GoVersion: "go1.26.8"},
		Now:   func() time.Time { return now },
	})
	// The events are what delivery produces: a verified delivery under enforce, an expired certificate
	// under enforce (deferred), an untrusted certificate under testing (delivered anyway).
	for _, ev := range deliveryEvents(t) {
		m.Delivery(ev)
	}
	m.Settled("delivered", 42*time.Second)
	m.Settled("failed", 5*24*time.Hour)
	in := m.Intake()
	in.Accepted(smtpserver.Accepted{Authenticated: true, Commit: 3 * time.Millisecond})
	in.Rejected(smtpserver.ReasonRelayDenied)
	m.DNSFailure("MX", dnsx.ReasonServfail)

	if got := testutil.ToFloat64(m.attempts.WithLabelValues("delivered", "verified", "mta-sts enforce")); got != 1 {
		t.Errorf("verified enforce deliveries = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.tlsFailures.WithLabelValues("certificate-expired", "true")); got != 1 {
		t.Errorf("enforced certificate-expired = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.tlsFailures.WithLabelValues("certificate-not-trusted", "false")); got != 1 {
		t.Errorf("recorded-only certificate-not-trusted (delivered under testing) = %v, want 1", got)
	}
	body := scrape(t, m)
	for _, want := range []string{
		`mxgate_build_info{goversion="go1.26.8",revision="abc",version="v1.2.3"} 1`,
		`mxgate_queue_messages 3`,
		`mxgate_queue_recipients 5`,
		`mxgate_queue_batches_in_flight 1`,
		`mxgate_queue_quarantined_total 0`,
		`mxgate_queue_oldest_age_seconds 90`,
		`mxgate_mtasts_cache_entries{mode="enforce"} 2`,
		`mxgate_mtasts_fetches_total{result="sts-policy-fetch-error"} 1`,
		`mxgate_mtasts_fetches_total{result="sts-webpki-invalid"} 0`,
		`mxgate_settings_generation{which="running"} 7`,
		`mxgate_tlsrpt_report_deliveries{status="queued",transport="mailto"} 3`,
		`mxgate_tlsrpt_report_deliveries{status="delivered",transport="https"} 0`,
		`mxgate_delivery_attempts_total{outcome="deferred",policy="mta-sts enforce",tls="no-session"} 1`,
		`mxgate_delivery_attempts_total{outcome="delivered",policy="mta-sts testing",tls="unverified"} 1`,
		`mxgate_delivery_delay_seconds_bucket{outcome="delivered",le="60"} 1`,
		`mxgate_delivery_delay_seconds_bucket{outcome="failed",le="172800"} 0`,
		`mxgate_delivery_delay_seconds_count{outcome="failed"} 1`,
		`mxgate_intake_accepted_total{reason="authenticated"} 1`,
		`mxgate_intake_accepted_total{reason="relay-network"} 0`,
		`mxgate_intake_rejected_total{reason="relay-denied"} 1`,
		`mxgate_intake_rejected_total{reason="too-many-connections"} 0`,
		`mxgate_intake_accept_duration_seconds_bucket{le="0.005"} 1`,
		`mxgate_dns_failures_total{query="MX",reason="servfail"} 1`,
		`mxgate_dns_failures_total{query="TXT",reason="timeout"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// TestEveryFamilyFromFirstScrape shows that before any event every family is exposed, with each known label
// value at zero, so that alerts on rates and on absent series work from the start.
func TestEveryFamilyFromFirstScrape(t *testing.T) {
	m := New(Sources{
		Queue:         func(context.Context) (QueueStats, error) { return QueueStats{}, nil },
		STSCache:      func() (map[string]int, map[string]uint64) { return nil, nil },
		Generations:   func() (int, int) { return 1, 1 },
		TLSRPTDropped: func() int64 { return 0 },
		DSNFallbacks:  func() int64 { return 0 },
		Reports:       func(context.Context) (map[[2]string]int, error) { return nil, nil },
	})
	body := scrape(t, m)
	families := []string{
		"process_resident_memory_bytes", "go_goroutines", "mxgate_build_info", "mxgate_delivery_attempts_total", "mxgate_tls_failures_total",
		"mxgate_delivery_delay_seconds", "mxgate_intake_accepted_total", "mxgate_intake_rejected_total",
		"mxgate_intake_accept_duration_seconds", "mxgate_dns_failures_total", "mxgate_tlsrpt_sessions_total",
		"mxgate_settings_commits_total", "mxgate_queue_messages", "mxgate_queue_recipients",
		"mxgate_queue_batches_in_flight", "mxgate_queue_quarantined_total", "mxgate_queue_oldest_age_seconds",
		"mxgate_mtasts_cache_entries", "mxgate_mtasts_fetches_total", "mxgate_settings_generation",
		"mxgate_tlsrpt_report_deliveries", "mxgate_tlsrpt_sessions_dropped_total", "mxgate_dsn_fallbacks_total",
	}
	for _, f := range families {
		if !strings.Contains(body, "# TYPE "+f+" ") {
			t.Errorf("first scrape lacks family %s", f)
		}
	}
	for _, want := range []string{
		`mxgate_delivery_attempts_total{outcome="failed",policy="required-verify",tls="none"} 0`,
		`mxgate_tls_failures_total{enforced="true",result_type="sts-policy-fetch-error"} 0`,
		`mxgate_intake_rejected_total{reason="storage-error"} 0`,
		`mxgate_dns_failures_total{query="TLSA",reason="servfail"} 0`,
		`mxgate_tlsrpt_sessions_total{policy_type="sts",result="failure"} 0`,
		`mxgate_delivery_delay_seconds_count{outcome="delivered"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("first scrape lacks %q", want)
		}
	}
	// One unit per family: no family mixes states of different kinds under one label.
	if strings.Contains(body, `state="`) {
		t.Errorf("a family has a state label mixing units:\n%s", body)
	}
}

// TestScrapeFailsWhenQueueUnreadable: an unreadable queue fails the scrape instead of showing an empty queue.
func TestScrapeFailsWhenQueueUnreadable(t *testing.T) {
	m := New(Sources{Queue: func(context.Context) (QueueStats, error) { return QueueStats{}, errors.New("database is locked") }})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code == 200 || !strings.Contains(rec.Body.String(), "database is locked") {
		t.Errorf("scrape with an unreadable queue: HTTP %d %q, want an error naming the cause", rec.Code, rec.Body)
	}
}

// staticSTS serves one fixed MTA-STS policy per domain: the test's input, not a decision.
type staticSTS map[string]tlspolicy.STSResult

func (s staticSTS) Lookup(_ context.Context, d address.Domain) (tlspolicy.STSResult, error) {
	return s[d.String()], nil
}

// deliveryEvents runs three real deliveries over simnet and returns their events.
func deliveryEvents(t *testing.T) []delivery.Event {
	t.Helper()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	now := time.Now()
	expired := n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx.expired.example"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	untrusted := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx.testing.example"}})
	sts := staticSTS{}
	for _, c := range []struct {
		domain, mode string
		cert         *tls.Certificate
	}{
		{"good.example", "enforce", nil},
		{"expired.example", "enforce", &expired},
		{"testing.example", "testing", &untrusted},
	} {
		if _, err := n.AddMX(simnet.MXOptions{Domain: c.domain, Host: "mx." + c.domain, Pref: 10, Cert: c.cert}); err != nil {
			t.Fatal(err)
		}
		pol, err := mtasts.ParsePolicy([]byte("version: STSv1\nmode: " + c.mode + "\nmx: mx." + c.domain + "\nmax_age: 86400\n"))
		if err != nil {
			t.Fatal(err)
		}
		sts[c.domain] = tlspolicy.STSResult{Policy: pol, ID: "1"}
	}
	var evs []delivery.Event
	d := &delivery.Deliverer{
		Resolver: n.Resolver(), Port: n.SMTPPort, Hostname: "gw.sender.test",
		Decider:        &tlspolicy.Decider{Settings: func() *tlspolicy.Settings { return &tlspolicy.Settings{EnableMTASTS: true} }, STS: sts, Roots: n.RootPool()},
		ConnectTimeout: 10 * time.Second, CommandTimeout: 20 * time.Second,
		Events: func(ev delivery.Event) { evs = append(evs, ev) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dom := range []string{"good.example", "expired.example", "testing.example"} {
		body := "Subject: t\r\n\r\nHello.\r\n"
		d.Deliver(ctx, queue.Batch{Domain: address.MustParseHost(dom), Jobs: []queue.Job{{MsgID: dom, From: address.MustParsePath("a@sender.test"), Size: int64(len(body)), Attempt: 1,
			Recipients: []queue.Recipient{{Addr: address.MustParseAddress("bob@" + dom)}},
			Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}}})
	}
	if len(evs) != 3 {
		t.Fatalf("got %d delivery events, want 3: %+v", len(evs), evs)
	}
	return evs
}

// TestDNSCacheCounters: the resolver cache's counters are exposed by result, and move with lookups through
// a real cache asking a real DNS server.
func TestDNSCacheCounters(t *testing.T) {
	s := dnstest.New(t)
	s.Add(
		"example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 7200 3600 1209600 60",
		"example.com. 300 IN MX 10 mx.example.com.",
		"broken.example. 300 IN MX 10 mx.broken.example.",
	)
	s.Fail("broken.example", dns.TypeMX, dnstest.FailServFail)
	c := s.Client()
	c.Cache = &dnsx.Cache{}
	m := New(Sources{DNSCache: func() (dnsx.CacheStats, bool) { return c.Cache.Stats(), true }})
	for _, want := range []string{`mxgate_dns_cache_lookups_total{result="hit"} 0`, `mxgate_dns_cache_lookups_total{result="miss"} 0`,
		`mxgate_dns_cache_entries 0`} {
		if body := scrape(t, m); !strings.Contains(body, want+"\n") {
			t.Errorf("before any lookup, exposition lacks %q", want)
		}
	}
	ctx := t.Context()
	for range 3 {
		_, _, _ = c.LookupMX(ctx, "example.com")
		_, _, _ = c.LookupMX(ctx, "missing.example.com")
		_, _, _ = c.LookupMX(ctx, "broken.example")
	}
	body := scrape(t, m)
	for _, want := range []string{
		`mxgate_dns_cache_lookups_total{result="hit"} 2`,
		`mxgate_dns_cache_lookups_total{result="negative"} 2`,
		`mxgate_dns_cache_lookups_total{result="servfail"} 2`,
		`mxgate_dns_cache_lookups_total{result="miss"} 3`,
		`mxgate_dns_cache_entries 3`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if body := scrape(t, New(Sources{DNSCache: func() (dnsx.CacheStats, bool) { return dnsx.CacheStats{}, false }})); strings.Contains(body, "mxgate_dns_cache_") {
		t.Error("without a resolver cache, the DNS cache families are exposed")
	}
}
