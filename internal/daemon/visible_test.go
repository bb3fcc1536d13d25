package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/config"
	"github.com/mxgate/mxgate/internal/daemon"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
	"github.com/mxgate/mxgate/internal/testpki"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// deliveryLogs returns the "delivery" log events for domain.
func deliveryLogs(logs *logtest.Buffer, domain string) []map[string]any {
	return logs.Records(func(m map[string]any) bool { return m["msg"] == "delivery" && m["domain"] == domain })
}

// TestFailuresVisibleAndOverrideLogged: a testing-mode failure on a delivered message reaches the delivery
// event, the delivery log, the queue history and mxgate_tls_failures_total{enforced="false"}; a rule with
// override delivers past an enforce policy, says so in every delivery log event, and status lists it.
func TestFailuresVisibleAndOverrideLogged(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for _, dom := range []string{"testing.example", "partner.example"} {
		bad := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx1." + dom}})
		// "later@" is refused for now, so that its message stays in the queue with its history.
		later := func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "later@") {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
			}
			return nil
		}
		if _, err := n.AddMX(simnet.MXOptions{Domain: dom, Host: "mx1." + dom, Pref: 10, Cert: &bad, RcptReply: later}); err != nil {
			t.Fatal(err)
		}
		mode := "testing"
		if dom == "partner.example" {
			mode = "enforce"
		}
		n.DNS.AddTXT("_mta-sts."+dom, "v=STSv1; id=1")
		if _, err := n.ServeMTASTSPolicy(dom, "version: STSv1\nmode: "+mode+"\nmx: mx1."+dom+"\nmax_age: 86400\n"); err != nil {
			t.Fatal(err)
		}
	}
	cfg := n.GatewayConfig(filepath.Join(t.TempDir(), "data"))
	cfg.Queue.RetryInitial = config.Duration(time.Hour)
	cfg.Domains = []config.DomainRule{{Name: "partner.example", TLS: tlspolicy.LevelOpportunistic, Override: true}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	g := &gw{n: n, smtp: ln.Addr().String(), events: make(chan delivery.Event, 100)}
	settled := make(chan queue.Settled, 100)
	g.d, err = daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard, Config: cfg, Roots: n.RootPool(), SMTPListener: ln, AdminListener: aln,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), OnDelivery: func(ev delivery.Event) { g.events <- ev },
		OnSettled: func(s queue.Settled) { settled <- s }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	c, err := smtp.Dial(g.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("alice@sender.example", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"bob@testing.example", "later@testing.example"} {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "From: alice@sender.example\r\nSubject: 1\r\n\r\nHello.\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ev := g.nextEvent(t, "testing.example")
	if ev.Result.Rcpt.String() != "bob@testing.example" {
		ev = g.nextEvent(t, "testing.example")
	}
	if ev.Result.Outcome != "delivered" || ev.Result.ResultType != "certificate-not-trusted" || ev.Enforced {
		t.Fatalf("testing-mode event = %+v (enforced %v), want delivered, certificate-not-trusted, not enforced", ev.Result, ev.Enforced)
	}
	// Counted per recipient result: bob (delivered) and later (451 over the same session) both saw it.
	if got := metricValue(t, g.d, "mxgate_tls_failures_total", map[string]string{"result_type": "certificate-not-trusted", "enforced": "false"}); got != 2 {
		t.Errorf(`mxgate_tls_failures_total{result_type="certificate-not-trusted",enforced="false"} = %v, want 2`, got)
	}
	// The delivery event comes before the queue records the result: wait until it is recorded.
	waitSettled(t, settled, ev.Result.MsgID, "bob@testing.example")
	detail, err := g.d.Queue.Get(context.Background(), ev.Result.MsgID)
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, a := range detail.Timeline {
		if a.Rcpt == "bob@testing.example" {
			seen = a.Outcome == "delivered" && a.ResultType == "certificate-not-trusted"
		}
	}
	if !seen {
		t.Errorf("queue history = %+v, want bob's delivered attempt carrying certificate-not-trusted", detail.Timeline)
	}

	if err := sendOn(c, "carol@partner.example", "2"); err != nil {
		t.Fatal(err)
	}
	ev = g.nextEvent(t, "partner.example")
	if ev.Result.Outcome != "delivered" || ev.Plan != "opportunistic override" {
		t.Fatalf("override event = %+v (plan %q), want delivered under opportunistic override", ev.Result, ev.Plan)
	}
	st, err := g.d.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.TLSOverrides) != 1 || st.TLSOverrides[0] != "partner.example: opportunistic override" {
		t.Errorf("status overrides = %q", st.TLSOverrides)
	}
	// The queue logs after it records the batch; wait for both log events, bounded.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := logs.Wait(wctx, func() bool {
		return len(deliveryLogs(logs, "partner.example")) > 0 && len(deliveryLogs(logs, "testing.example")) > 0
	}); err != nil {
		t.Fatalf("no delivery log events: %v", err)
	}
	if l := deliveryLogs(logs, "testing.example")[0]; l["result_type"] != "certificate-not-trusted" || l["outcome"] != "delivered" {
		t.Errorf("testing.example delivery log = %v", l)
	}
	if l := deliveryLogs(logs, "partner.example")[0]; l["policy"] != "opportunistic override" {
		t.Errorf("partner.example delivery log policy = %v, want opportunistic override", l["policy"])
	}
}
