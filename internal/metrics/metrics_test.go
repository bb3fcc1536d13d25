package metrics

import (
	"context"
	"crypto/tls"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
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
	// The events are what delivery produces: a verified delivery under enforce, an expired certificate
	// under enforce (deferred), an untrusted certificate under testing (delivered anyway).
	for _, ev := range deliveryEvents(t) {
		m.Delivery(ev)
	}
	if got := testutil.ToFloat64(m.Attempts.WithLabelValues("delivered", "verified", "mta-sts enforce")); got != 1 {
		t.Errorf("verified enforce deliveries = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.TLSFailures.WithLabelValues("certificate-expired", "true")); got != 1 {
		t.Errorf("enforced certificate-expired = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.TLSFailures.WithLabelValues("certificate-not-trusted", "false")); got != 1 {
		t.Errorf("recorded-only certificate-not-trusted (delivered under testing) = %v, want 1", got)
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
		`mxgate_delivery_attempts_total{outcome="delivered",policy="mta-sts testing",tls="unverified"} 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
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
		d.Deliver(ctx, queue.Batch{Domain: dom, Jobs: []queue.Job{{MsgID: dom, From: "a@sender.test", Size: int64(len(body)), Attempt: 1,
			Recipients: []queue.Recipient{{Addr: "bob@" + dom}},
			Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}}})
	}
	if len(evs) != 3 {
		t.Fatalf("got %d delivery events, want 3: %+v", len(evs), evs)
	}
	return evs
}
