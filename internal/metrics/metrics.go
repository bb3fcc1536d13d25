// Package metrics exposes mxgate's Prometheus metrics (prefix mxgate_). Counters are fed by events from
// delivery, intake and reporting; gauges are read from the queue, the MTA-STS cache and the settings store
// when scraped. No metric has a per-domain label: cardinality stays bounded however many destinations
// there are.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mxgate/mxgate/internal/delivery"
)

// Sources are read at scrape time. Any may be nil.
type Sources struct {
	// Queue returns queued messages, queued recipients, in-flight batches, quarantined count and the
	// oldest queued message's arrival.
	Queue func(ctx context.Context) (messages, recipients, inFlight int, quarantined int64, oldest time.Time, err error)
	// STSCache returns unexpired cached policies by mode, and fetch counts by result ("ok" or a result type).
	STSCache func() (byMode map[string]int, fetches map[string]uint64)
	// Generations returns the committed settings generation and the one this node runs.
	Generations func() (committed, running int)
	// TLSRPTDropped counts sessions the recorder had to drop.
	TLSRPTDropped func() int64
	// DSNFallbacks counts DSNs that could not be built as composed and were built again with fewer fields.
	DSNFallbacks func() int64
	// Reports returns the TLS report deliveries in the report log by transport (mailto, https) and status.
	Reports func(ctx context.Context) (map[[2]string]int, error)
	// Components returns, per component, whether it does what the settings ask (running, or off because a
	// setting says so) rather than having failed.
	Components func() map[string]bool
	Now        func() time.Time
}

// Metrics holds the registry and the event counters.
type Metrics struct {
	reg *prometheus.Registry

	Attempts     *prometheus.CounterVec
	TLSFailures  *prometheus.CounterVec
	Accepted     prometheus.Counter
	TLSRPTSess   *prometheus.CounterVec
	SettingsCmts prometheus.Counter
}

// New builds the registry with the Go and process collectors and the gateway's own metrics.
func New(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_delivery_attempts_total",
			Help: "Recipient delivery attempts by outcome (delivered, deferred, failed), TLS (none, unverified, verified) and policy (mta-sts enforce, mta-sts testing, required-verify, opportunistic, ...).",
		}, []string{"outcome", "tls", "policy"}),
		TLSFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_tls_failures_total",
			Help: "TLS and policy failures seen by delivery attempts (per recipient), by RFC 8460 result type, and whether the plan enforced them (enforce, required levels, REQUIRETLS) or only recorded them (MTA-STS testing, opportunistic TLS: the mail went anyway).",
		}, []string{"result_type", "enforced"}),
		Accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxgate_messages_accepted_total", Help: "Messages accepted by SMTP intake (acknowledged with 250).",
		}),
		TLSRPTSess: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_tlsrpt_sessions_total", Help: "Delivery sessions recorded for TLS reporting, by policy type and result.",
		}, []string{"policy_type", "result"}),
		SettingsCmts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxgate_settings_commits_total", Help: "Settings generations committed while this process ran.",
		}),
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Attempts, m.TLSFailures, m.Accepted, m.TLSRPTSess, m.SettingsCmts, &scraped{src: src})
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry, for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Delivery counts one recipient outcome as delivery reports it. A TLS failure is counted whatever the
// outcome: enforced="true" when the plan stops delivery on failures, "false" when it only records them
// (MTA-STS testing, opportunistic TLS), so that failures that did not block mail are visible too.
func (m *Metrics) Delivery(ev delivery.Event) {
	r := ev.Result
	m.Attempts.WithLabelValues(string(r.Outcome), tlsClass(r.TLS), ev.Plan).Inc()
	if r.ResultType != "" {
		m.TLSFailures.WithLabelValues(r.ResultType, strconv.FormatBool(ev.Enforced)).Inc()
	}
}

// tlsClass reduces "verified TLS 1.3" to "verified".
func tlsClass(tls string) string {
	switch {
	case tls == "":
		return "no-session"
	case strings.HasPrefix(tls, "verified"):
		return "verified"
	case strings.HasPrefix(tls, "unverified"):
		return "unverified"
	}
	return "none"
}

// scraped reads gauges from the sources at scrape time.
type scraped struct{ src Sources }

var (
	descQueued      = prometheus.NewDesc("mxgate_queue_messages", "Messages in the queue by state (queued, in_flight_batches, quarantined_since_start).", []string{"state"}, nil)
	descQueuedRcpts = prometheus.NewDesc("mxgate_queue_recipients", "Recipients waiting for delivery.", nil, nil)
	descOldest      = prometheus.NewDesc("mxgate_queue_oldest_age_seconds", "Age of the oldest queued message (0 when the queue is empty).", nil, nil)
	descSTSEntries  = prometheus.NewDesc("mxgate_mtasts_cache_entries", "Unexpired cached MTA-STS policies by mode.", []string{"mode"}, nil)
	descSTSFetches  = prometheus.NewDesc("mxgate_mtasts_fetches_total", "MTA-STS policy fetches by result (ok or an RFC 8460 result type).", []string{"result"}, nil)
	descGeneration  = prometheus.NewDesc("mxgate_settings_generation", "Settings generation committed and running on this node.", []string{"which"}, nil)
	descReports     = prometheus.NewDesc("mxgate_tlsrpt_report_deliveries", "TLS report deliveries in the report log (kept 30 days) by transport and status.", []string{"transport", "status"}, nil)
	descComponentUp = prometheus.NewDesc("mxgate_component_up", "1 when the component does what the committed settings ask (running, or off because a setting says so); 0 when it should run and does not (status shows why).", []string{"component"}, nil)
	descDropped     = prometheus.NewDesc("mxgate_tlsrpt_sessions_dropped_total", "Sessions the TLS report recorder could not keep.", nil, nil)
	descDSNFallback = prometheus.NewDesc("mxgate_dsn_fallbacks_total", "DSNs that could not be built as composed (a field refused) and were sent with fewer fields, or not at all; the failures they report were recorded all the same.", nil, nil)
)

func (s *scraped) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueued, descQueuedRcpts, descOldest, descSTSEntries, descSTSFetches, descGeneration, descDropped, descReports, descComponentUp, descDSNFallback} {
		ch <- d
	}
}

func (s *scraped) Collect(ch chan<- prometheus.Metric) {
	now := time.Now
	if s.src.Now != nil {
		now = s.src.Now
	}
	if s.src.Queue != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msgs, rcpts, inFlight, quarantined, oldest, err := s.src.Queue(ctx)
		cancel()
		if err == nil {
			ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(msgs), "queued")
			ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(inFlight), "in_flight_batches")
			ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(quarantined), "quarantined_since_start")
			ch <- prometheus.MustNewConstMetric(descQueuedRcpts, prometheus.GaugeValue, float64(rcpts))
			age := 0.0
			if !oldest.IsZero() {
				age = now().Sub(oldest).Seconds()
			}
			ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
		}
	}
	if s.src.STSCache != nil {
		byMode, fetches := s.src.STSCache()
		for _, mode := range []string{"enforce", "testing", "none"} {
			ch <- prometheus.MustNewConstMetric(descSTSEntries, prometheus.GaugeValue, float64(byMode[mode]), mode)
		}
		for res, n := range fetches {
			ch <- prometheus.MustNewConstMetric(descSTSFetches, prometheus.CounterValue, float64(n), res)
		}
	}
	if s.src.Generations != nil {
		c, r := s.src.Generations()
		ch <- prometheus.MustNewConstMetric(descGeneration, prometheus.GaugeValue, float64(c), "committed")
		ch <- prometheus.MustNewConstMetric(descGeneration, prometheus.GaugeValue, float64(r), "running")
	}
	if s.src.Reports != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		counts, err := s.src.Reports(ctx)
		cancel()
		if err == nil {
			for k, n := range counts {
				ch <- prometheus.MustNewConstMetric(descReports, prometheus.GaugeValue, float64(n), k[0], k[1])
			}
		}
	}
	if s.src.Components != nil {
		for name, up := range s.src.Components() {
			v := 0.0
			if up {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descComponentUp, prometheus.GaugeValue, v, name)
		}
	}
	if s.src.TLSRPTDropped != nil {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.src.TLSRPTDropped()))
	}
	if s.src.DSNFallbacks != nil {
		ch <- prometheus.MustNewConstMetric(descDSNFallback, prometheus.CounterValue, float64(s.src.DSNFallbacks()))
	}
}
