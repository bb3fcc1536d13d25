// Package metrics exposes mxgate's Prometheus metrics (prefix mxgate_). Counters and histograms are fed by
// events from intake, DNS, delivery, the queue and reporting; gauges are read from the queue, the MTA-STS
// cache and the settings store when scraped.
//
// Every family is present from the first scrape: each label whose values are a closed set (outcomes, TLS
// classes, policies, RFC 8460 result types, refusal reasons, DNS failure reasons, report statuses) starts
// at zero for every value, so that an alert on a rate or an absent series works before the first event.
// Each family counts one unit (messages, recipients, attempts, batches, seconds), never a mix. No metric has
// a per-domain label: cardinality stays bounded however many destinations there are.
package metrics

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/smtpserver"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
	"github.com/mxgate/mxgate/internal/version"
)

// QueueStats are the queue's figures at scrape time.
type QueueStats struct {
	Messages, Recipients int
	// BatchesInFlight are batches being delivered now.
	BatchesInFlight int
	// Quarantined counts spool entries quarantined since the process started.
	Quarantined int64
	// Oldest is the arrival of the oldest queued message (zero when the queue is empty).
	Oldest time.Time
}

// Sources are read at scrape time. Any may be nil.
type Sources struct {
	Queue func(ctx context.Context) (QueueStats, error)
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
	// Build describes the binary (mxgate_build_info); zero means version.Get().
	Build version.Info
	// Components returns, per component, whether it does what the settings ask (running, or off because a
	// setting says so) rather than having failed.
	Components func() map[string]bool
	// DNSCache returns the resolver cache's counters; ok is false when the resolver keeps no cache
	// (dns.cache off, or a resolver given by the embedding program), and then they are not exposed.
	DNSCache func() (st dnsx.CacheStats, ok bool)
	Now      func() time.Time
}

// Known label values, each started at zero.
var (
	outcomes   = []string{"delivered", "deferred", "failed"}
	tlsClasses = []string{"none", "unverified", "verified", "no-session"}
	// policies are the names of tlspolicy.Plan.Name.
	policies = []string{"mta-sts enforce", "mta-sts testing",
		string(tlspolicy.LevelNone), string(tlspolicy.LevelOpportunistic), string(tlspolicy.LevelRequired),
		string(tlspolicy.LevelRequiredVerify), string(tlspolicy.LevelDANE), string(tlspolicy.LevelDANEOnly)}
	resultTypes = []tlsrpt.ResultType{tlsrpt.ResultSTARTTLSNotSupported, tlsrpt.ResultCertificateHostMismatch,
		tlsrpt.ResultCertificateExpired, tlsrpt.ResultCertificateNotTrusted, tlsrpt.ResultValidationFailure,
		tlsrpt.ResultTLSAInvalid, tlsrpt.ResultDNSSECInvalid, tlsrpt.ResultDANERequired,
		tlsrpt.ResultSTSPolicyFetchError, tlsrpt.ResultSTSPolicyInvalid, tlsrpt.ResultSTSWebPKIInvalid}
	// stsFetchResults are "ok" and what tlspolicy.STSFetchResult returns.
	stsFetchResults = []string{"ok", string(tlsrpt.ResultSTSPolicyFetchError), string(tlsrpt.ResultSTSPolicyInvalid), string(tlsrpt.ResultSTSWebPKIInvalid)}
	stsModes        = []string{"enforce", "testing", "none"}
	policyTypes     = []tlsrpt.PolicyType{tlsrpt.PolicySTS, tlsrpt.PolicyTLSA, tlsrpt.PolicyNoPolicyFound}
	reportStatuses  = []string{"pending", "sending", "delivered", "queued", "retrying", "failed", "suppressed"}
	transports      = []string{"mailto", "https"}
	acceptReasons   = []string{"relay-network", "authenticated"}
)

// Metrics holds the registry and the event counters.
type Metrics struct {
	reg *prometheus.Registry

	attempts      *prometheus.CounterVec
	tlsFailures   *prometheus.CounterVec
	deliveryDelay *prometheus.HistogramVec
	accepted      *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	commit        prometheus.Histogram
	dnsFailures   *prometheus.CounterVec
	tlsrptSess    *prometheus.CounterVec
	settingsCmts  prometheus.Counter
}

// New builds the registry with the Go and process collectors and the gateway's own metrics.
func New(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_delivery_attempts_total",
			Help: "Recipient delivery attempts by outcome (delivered, deferred, failed), TLS (none, unverified, verified, no-session) and policy (mta-sts enforce, mta-sts testing, required-verify, opportunistic, ...).",
		}, []string{"outcome", "tls", "policy"}),
		tlsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_tls_failures_total",
			Help: "TLS and policy failures seen by delivery attempts (per recipient), by RFC 8460 result type, and whether the plan enforced them (enforce, required levels, REQUIRETLS) or only recorded them (MTA-STS testing, opportunistic TLS: the mail went anyway).",
		}, []string{"result_type", "enforced"}),
		deliveryDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mxgate_delivery_delay_seconds",
			Help: "Time from a message's arrival to its recipient's final attempt, by final outcome (delivered, failed).",
			// From an immediate delivery to the 5-day expiry.
			Buckets: []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 5 * 86400},
		}, []string{"outcome"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_intake_accepted_total",
			Help: "Messages accepted by SMTP intake (acknowledged with 250), by why the client could relay (relay-network, authenticated).",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_intake_rejected_total",
			Help: "Connections, commands and messages refused by SMTP intake (4xx or 5xx replies), by reason.",
		}, []string{"reason"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mxgate_intake_accept_duration_seconds",
			Help:    "Time from the end of a message's data to its 250 reply: the spool fsync and queue commit the client waits for.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}),
		dnsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_dns_failures_total",
			Help: "Temporary DNS lookup failures by query (MX, TXT, IP, TLSA) and reason (timeout, bogus, servfail, refused, rcode, network, cname, other). NXDOMAIN and NODATA are answers, not failures.",
		}, []string{"query", "reason"}),
		tlsrptSess: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxgate_tlsrpt_sessions_total", Help: "Delivery sessions recorded for TLS reporting, by policy type and result.",
		}, []string{"policy_type", "result"}),
		settingsCmts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mxgate_settings_commits_total", Help: "Settings generations committed while this process ran.",
		}),
	}
	for _, o := range outcomes {
		for _, t := range tlsClasses {
			for _, p := range policies {
				m.attempts.WithLabelValues(o, t, p)
			}
		}
	}
	for _, rt := range resultTypes {
		m.tlsFailures.WithLabelValues(string(rt), "true")
		m.tlsFailures.WithLabelValues(string(rt), "false")
	}
	m.deliveryDelay.WithLabelValues("delivered")
	m.deliveryDelay.WithLabelValues("failed")
	for _, r := range acceptReasons {
		m.accepted.WithLabelValues(r)
	}
	for _, r := range smtpserver.Reasons {
		m.rejected.WithLabelValues(string(r))
	}
	for _, q := range dnsx.QueryTypes {
		for _, r := range dnsx.Reasons {
			m.dnsFailures.WithLabelValues(q, string(r))
		}
	}
	for _, pt := range policyTypes {
		m.tlsrptSess.WithLabelValues(string(pt), "success")
		m.tlsrptSess.WithLabelValues(string(pt), "failure")
	}
	build := src.Build
	if build.Version == "" {
		build = version.Get()
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mxgate_build_info",
		Help:        "Always 1; the labels say which mxgate runs (version, VCS revision, Go version).",
		ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion},
	})
	buildInfo.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.attempts, m.tlsFailures, m.deliveryDelay, m.accepted, m.rejected, m.commit, m.dnsFailures,
		m.tlsrptSess, m.settingsCmts, buildInfo, &scraped{src: src})
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
	m.attempts.WithLabelValues(string(r.Outcome), tlsClass(r.TLS), ev.Plan).Inc()
	if r.ResultType != "" {
		m.tlsFailures.WithLabelValues(string(r.ResultType), strconv.FormatBool(ev.Enforced)).Inc()
	}
}

// Settled observes the delay of a recipient that reached its final outcome (delivered or failed).
func (m *Metrics) Settled(outcome string, delay time.Duration) {
	m.deliveryDelay.WithLabelValues(outcome).Observe(delay.Seconds())
}

// Intake returns the observer SMTP intake reports to.
func (m *Metrics) Intake() smtpserver.Observer {
	return smtpserver.Observer{
		Accepted: func(a smtpserver.Accepted) {
			reason := "relay-network"
			if a.Authenticated {
				reason = "authenticated"
			}
			m.accepted.WithLabelValues(reason).Inc()
			m.commit.Observe(a.Commit.Seconds())
		},
		Rejected: func(r smtpserver.Reason) { m.rejected.WithLabelValues(string(r)).Inc() },
	}
}

// DNSFailure counts a temporary DNS failure (see dnsx.Observed).
func (m *Metrics) DNSFailure(qtype string, reason dnsx.Reason) {
	m.dnsFailures.WithLabelValues(qtype, string(reason)).Inc()
}

// TLSRPTSession counts a session recorded for TLS reporting.
func (m *Metrics) TLSRPTSession(pt tlsrpt.PolicyType, success bool) {
	result := "failure"
	if success {
		result = "success"
	}
	m.tlsrptSess.WithLabelValues(string(pt), result).Inc()
}

// SettingsCommitted counts a committed settings generation.
func (m *Metrics) SettingsCommitted() { m.settingsCmts.Inc() }

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
	descQueued      = prometheus.NewDesc("mxgate_queue_messages", "Messages in the queue.", nil, nil)
	descQueuedRcpts = prometheus.NewDesc("mxgate_queue_recipients", "Recipients waiting for delivery.", nil, nil)
	descInFlight    = prometheus.NewDesc("mxgate_queue_batches_in_flight", "Delivery batches (one domain, one connection plan) being delivered now.", nil, nil)
	descQuarantined = prometheus.NewDesc("mxgate_queue_quarantined_total", "Spool entries quarantined since the process started (unreadable at start; never deleted).", nil, nil)
	descOldest      = prometheus.NewDesc("mxgate_queue_oldest_age_seconds", "Age of the oldest queued message (0 when the queue is empty).", nil, nil)
	descSTSEntries  = prometheus.NewDesc("mxgate_mtasts_cache_entries", "Unexpired cached MTA-STS policies by mode.", []string{"mode"}, nil)
	descSTSFetches  = prometheus.NewDesc("mxgate_mtasts_fetches_total", "MTA-STS policy fetches by result (ok or an RFC 8460 result type).", []string{"result"}, nil)
	descGeneration  = prometheus.NewDesc("mxgate_settings_generation", "Settings generation committed and running on this node.", []string{"which"}, nil)
	descReports     = prometheus.NewDesc("mxgate_tlsrpt_report_deliveries", "TLS report deliveries in the report log (kept 30 days) by transport and status.", []string{"transport", "status"}, nil)
	descComponentUp = prometheus.NewDesc("mxgate_component_up", "1 when the component does what the committed settings ask (running, or off because a setting says so); 0 when it should run and does not (status shows why).", []string{"component"}, nil)
	descDropped     = prometheus.NewDesc("mxgate_tlsrpt_sessions_dropped_total", "Sessions the TLS report recorder could not keep.", nil, nil)
	descDNSCache    = prometheus.NewDesc("mxgate_dns_cache_lookups_total", "DNS lookups through the resolver's cache (dns.cache), by result: hit (records from the cache), negative (NXDOMAIN or NODATA from the cache), servfail (a SERVFAIL, bogus or REFUSED outcome kept briefly), miss (asked a server). Absent when dns.cache is off.", []string{"result"}, nil)
	descDNSEntries  = prometheus.NewDesc("mxgate_dns_cache_entries", "Answers kept in the resolver's cache now (expired ones included until they are swept).", nil, nil)
	descDSNFallback = prometheus.NewDesc("mxgate_dsn_fallbacks_total", "DSNs that could not be built as composed (a field refused) and were sent with fewer fields, or not at all; the failures they report were recorded all the same.", nil, nil)
)

func (s *scraped) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueued, descQueuedRcpts, descInFlight, descQuarantined, descOldest,
		descSTSEntries, descSTSFetches, descGeneration, descDropped, descReports, descComponentUp, descDSNFallback,
		descDNSCache, descDNSEntries} {
		ch <- d
	}
}

func (s *scraped) Collect(ch chan<- prometheus.Metric) {
	now := time.Now
	if s.src.Now != nil {
		now = s.src.Now
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if s.src.Queue != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := s.src.Queue(ctx)
		cancel()
		if err != nil {
			// A scrape that cannot read the queue must fail visibly, not show an empty queue.
			ch <- prometheus.NewInvalidMetric(descQueued, err)
		} else {
			gauge(descQueued, float64(st.Messages))
			gauge(descQueuedRcpts, float64(st.Recipients))
			gauge(descInFlight, float64(st.BatchesInFlight))
			counter(descQuarantined, float64(st.Quarantined))
			age := 0.0
			if !st.Oldest.IsZero() {
				age = max(now().Sub(st.Oldest).Seconds(), 0)
			}
			gauge(descOldest, age)
		}
	}
	if s.src.STSCache != nil {
		byMode, fetches := s.src.STSCache()
		for _, mode := range stsModes {
			gauge(descSTSEntries, float64(byMode[mode]), mode)
		}
		for _, res := range stsFetchResults {
			counter(descSTSFetches, float64(fetches[res]), res)
		}
		for res, n := range fetches {
			if !slices.Contains(stsFetchResults, res) {
				counter(descSTSFetches, float64(n), res)
			}
		}
	}
	if s.src.Generations != nil {
		c, r := s.src.Generations()
		gauge(descGeneration, float64(c), "committed")
		gauge(descGeneration, float64(r), "running")
	}
	if s.src.Reports != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		counts, err := s.src.Reports(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descReports, err)
		} else {
			for _, tr := range transports {
				for _, st := range reportStatuses {
					gauge(descReports, float64(counts[[2]string{tr, st}]), tr, st)
				}
			}
			for k, n := range counts {
				if !slices.Contains(transports, k[0]) || !slices.Contains(reportStatuses, k[1]) {
					gauge(descReports, float64(n), k[0], k[1])
				}
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
		counter(descDropped, float64(s.src.TLSRPTDropped()))
	}
	if s.src.DSNFallbacks != nil {
		ch <- prometheus.MustNewConstMetric(descDSNFallback, prometheus.CounterValue, float64(s.src.DSNFallbacks()))
	}
	if s.src.DNSCache != nil {
		if st, ok := s.src.DNSCache(); ok {
			counter(descDNSCache, float64(st.Hits), "hit")
			counter(descDNSCache, float64(st.Negative), "negative")
			counter(descDNSCache, float64(st.Failures), "servfail")
			counter(descDNSCache, float64(st.Misses), "miss")
			gauge(descDNSEntries, float64(st.Entries))
		}
	}
}
