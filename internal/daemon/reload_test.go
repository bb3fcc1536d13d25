package daemon_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
)

// A reloaded tls.ca_file applies to the next delivery: a required-verify domain whose MX certificate comes
// from a CA added to the file is deferred before the reload and delivered over verified TLS after it. Keys
// that need a restart are named, and applied ones are not.
func TestReloadCAFile(t *testing.T) {
	n := newSimNet(t)
	other := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1.example.com"}})
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10, Cert: &other})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, n.TrustedCA.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := n.GatewayConfig(filepath.Join(dir, "data"))
	cfg.TLS.CAFile = caFile
	cfg.Domains = []config.DomainRule{{Name: "example.com", TLS: "required-verify"}}
	g := startGatewayWith(t, n, cfg, nil)

	c, err := smtp.Dial(g.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendOn(c, "bob@example.com", "1"); err != nil {
		t.Fatal(err)
	}
	if ev := g.nextEvent(t, "example.com"); ev.Result.Outcome != "deferred" || ev.Result.ResultType != "certificate-not-trusted" {
		t.Fatalf("before the reload: %+v, want deferred certificate-not-trusted", ev.Result)
	}

	if err := os.WriteFile(caFile, append(n.TrustedCA.PEM(), n.EvilCA.PEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	next := *cfg
	next.Queue.Concurrency++
	r := g.d.Reload(&next)
	if !slices.ContainsFunc(r.Reloaded, func(s string) bool { return strings.HasPrefix(s, "tls.ca_file: ") }) || len(r.Failed) != 0 {
		t.Fatalf("Reload = %+v, want tls.ca_file reloaded", r)
	}
	if !slices.Equal(r.NeedRestart, []string{"queue.concurrency"}) {
		t.Errorf("NeedRestart = %q, want queue.concurrency only", r.NeedRestart)
	}
	if err := sendOn(c, "carol@example.com", "2"); err != nil {
		t.Fatal(err)
	}
	ev := g.nextEvent(t, "example.com")
	if ev.Result.Outcome != "delivered" || !strings.HasPrefix(ev.Result.TLS, "verified") {
		t.Fatalf("after the reload: %+v, want delivered over verified TLS", ev.Result)
	}
	if got := len(mx.Messages()); got != 1 {
		t.Errorf("MX has %d messages, want 1", got)
	}

	// A CA file that no longer loads keeps the trust store in use.
	if err := os.WriteFile(caFile, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := g.d.Reload(&next); len(r.Failed) != 1 || !strings.Contains(r.Failed[0], "keeping the trust store in use") {
		t.Fatalf("Reload with a broken CA file = %+v, want one failure that keeps the trust store", r)
	}
}
