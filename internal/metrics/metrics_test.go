package metrics

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsExposition(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	m := New(Sources{
		Queue: func(context.Context) (int, int, int, int64, time.Time, error) {
			return 3, 5, 1, 0, now.Add(-90 * time.Second), nil
		},
		STSCache: func() (map[string]int, map[string]uint64) {
			return map[string]int{"enforce": 2, "testing": 1}, map[string]uint64{"ok": 4, "sts-policy-fetch-error": 1}
		},
		Generations: func() (int, int) { return 7, 7 },
		Reports: func(context.Context) (map[[2]string]int, error) {
			return map[[2]string]int{{"mailto", "queued"}: 3, {"https", "failed"}: 1}, nil
		},
		Now: func() time.Time { return now },
	})
	m.Delivery("delivered", "verified TLS 1.3", "mta-sts enforce", "")
	m.Delivery("deferred", "", "mta-sts enforce", "certificate-expired")
	m.Delivery("delivered", "unverified TLS 1.3", "mta-sts testing", "certificate-not-trusted")
	if got := testutil.ToFloat64(m.Attempts.WithLabelValues("delivered", "verified", "mta-sts enforce")); got != 1 {
		t.Errorf("verified enforce deliveries = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.TLSFailures.WithLabelValues("certificate-expired", "true")); got != 1 {
		t.Errorf("enforced certificate-expired = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.TLSFailures.WithLabelValues("certificate-not-trusted", "false")); got != 1 {
		t.Errorf("recorded-only certificate-not-trusted = %v, want 1", got)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`mxgate_queue_messages{state="queued"} 3`,
		`mxgate_queue_oldest_age_seconds 90`,
		`mxgate_mtasts_cache_entries{mode="enforce"} 2`,
		`mxgate_mtasts_fetches_total{result="sts-policy-fetch-error"} 1`,
		`mxgate_settings_generation{which="running"} 7`,
		`mxgate_tlsrpt_report_deliveries{status="queued",transport="mailto"} 3`,
		`mxgate_delivery_attempts_total{outcome="deferred",policy="mta-sts enforce",tls="no-session"} 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}
