package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/simnet"
)

// jsonLog collects JSON log records.
type jsonLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *jsonLog) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// TestDaemonLogsAndMetrics shows, on a running gateway with a JSON log: the console password and the DKIM
// record as JSON records, a delivery event with the sender and the delay, and the metrics of intake,
// delivery latency, DNS failures and commits.
func TestDaemonLogsAndMetrics(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10}); err != nil {
		t.Fatal(err)
	}
	n.DNS.AddMX("broken.example", "mx.broken.example", 10)
	n.DNS.SetFailure("broken.example", dns.TypeMX, simnet.ServFail)

	logs := &jsonLog{}
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.GatewayConfig(dataDir)
	cfg.DNS.Cache = true // as deployed: its counters are metrics
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan delivery.Event, 100)
	d, err := daemon.New(context.Background(), daemon.Options{Config: cfg, Roots: n.RootPool(), SMTPListener: ln, AdminListener: aln,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), OnDelivery: func(ev delivery.Event) { events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	pw := logs.records(t, "web console password for the first login: change it on the Account page")
	if len(pw) != 1 || pw[0]["console_password"] == "" || pw[0]["password_file"] != filepath.Join(dataDir, "console-password") {
		t.Errorf("console password records = %v, want one with console_password and password_file", pw)
	}

	s := d.Settings()
	for i := range 3 {
		if err := s.Set(ctx, "TLSRPT.OnlyFailures", fmt.Sprint(i%2 == 0)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, fmt.Sprintf("commit %d", i), "test"); err != nil {
			t.Fatal(err)
		}
	}
	// The DKIM record to publish, printed once at first start, is a structured record as well.
	if got := logs.records(t, "TLS reports are DKIM-signed: publish this DNS record"); len(got) != 1 || got[0]["record_txt"] == nil {
		t.Errorf("DKIM record = %v, want one record with record_txt", got)
	}

	c, err := smtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatal(err)
	}
	if err := sendOn(c, "carol@broken.example", "2"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for !seen["example.com"] || !seen["broken.example"] {
		select {
		case ev := <-events:
			seen[ev.Domain.String()] = true
		case <-timeout:
			t.Fatalf("delivery events seen: %v", seen)
		}
	}

	var delivered map[string]any
	for waitUntil := time.Now().Add(10 * time.Second); time.Now().Before(waitUntil); time.Sleep(20 * time.Millisecond) {
		for _, rec := range logs.records(t, "delivery") {
			if rec["rcpt"] == "bob@example.com" {
				delivered = rec
			}
		}
		if delivered != nil {
			break
		}
	}
	if delivered == nil || delivered["from"] != "alice@sender.example" {
		t.Errorf("delivery event = %v, want from=alice@sender.example", delivered)
	}
	if delay, ok := delivered["delay"].(float64); !ok || delay < 0 {
		t.Errorf("delivery event delay = %v, want seconds", delivered["delay"])
	}

	// The delivery is counted once it is recorded, just after its log event.
	var body string
	for waitUntil := time.Now().Add(10 * time.Second); time.Now().Before(waitUntil); time.Sleep(20 * time.Millisecond) {
		if body = scrapeMetrics(t, aln.Addr().String(), dataDir); strings.Contains(body, `mxgate_delivery_delay_seconds_count{outcome="delivered"} 1`) {
			break
		}
	}
	for _, want := range []string{
		`mxgate_intake_accepted_total{reason="relay-network"} 2`,
		`mxgate_delivery_delay_seconds_count{outcome="delivered"} 1`,
		`mxgate_dns_failures_total{query="MX",reason="servfail"} `,
		`mxgate_settings_commits_total 3`,
		`mxgate_build_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, `mxgate_dns_failures_total{query="MX",reason="servfail"} 0`) {
		t.Errorf("the SERVFAIL of broken.example was not counted")
	}
	// The resolver cache's questions are counted: the MX of example.com, at least, was asked of the server.
	if !strings.Contains(body, `mxgate_dns_cache_lookups_total{result="miss"} `) ||
		strings.Contains(body, `mxgate_dns_cache_lookups_total{result="miss"} 0`+"\n") {
		t.Errorf("metrics lack a non-zero mxgate_dns_cache_lookups_total{result=\"miss\"}")
	}
}

func scrapeMetrics(t *testing.T, addr, dataDir string) string {
	t.Helper()
	tok, err := os.ReadFile(admin.TokenPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s: %s", resp.Status, b)
	}
	return string(b)
}

// metricValue is the value of the series of family name with exactly labels, from the daemon's registry.
func metricValue(t *testing.T, d *daemon.Daemon, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := d.Metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}
