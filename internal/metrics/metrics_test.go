package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/smtpserver"
	"github.com/mxgate/mxgate/internal/tlsrpt"
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
	m.Delivery("delivered", "verified TLS 1.3", "mta-sts enforce", "")
	m.Delivery("deferred", "", "mta-sts enforce", tlsrpt.ResultCertificateExpired)
	m.Delivery("delivered", "unverified TLS 1.3", "mta-sts testing", tlsrpt.ResultCertificateNotTrusted)
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
		t.Errorf("recorded-only certificate-not-trusted = %v, want 1", got)
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
		"mxgate_tlsrpt_report_deliveries", "mxgate_tlsrpt_sessions_dropped_total",
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
