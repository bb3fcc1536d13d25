package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/gatewaytest"
	"github.com/mxgate/mxgate/internal/simnet"
)

// sendMany submits n messages to rcpt from clients concurrent clients, tolerating a gateway that goes away
// (messages not acknowledged are retried after restart by the caller). It returns the acknowledged tokens.
type submitter struct {
	mu    sync.Mutex
	acked map[string]bool
}

// ack records an acknowledged token and returns how many distinct tokens have been acknowledged.
func (s *submitter) ack(tok string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked[tok] = true
	return len(s.acked)
}

func (s *submitter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// Restart with 1,000 queued messages: every one is delivered exactly once after the restart.
func TestRestartWithQueuedMessages(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	mx.Stop() // the destination is down while the messages are accepted
	dir := filepath.Join(t.TempDir(), "data")
	cfg := writeConfig(t, n, dir, "")
	g := start(t, cfg)

	const total = 1000
	sub := &submitter{acked: map[string]bool{}}
	var wg sync.WaitGroup
	var next atomic.Int64
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				tok := fmt.Sprintf("t1-%d", i)
				if err := send(g.SMTP, "bob@example.com", tok); err != nil {
					t.Errorf("submitting %s: %v", tok, err)
					return
				}
				sub.ack(tok)
			}
		}()
	}
	wg.Wait()
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := len(mx.Messages()); got != 0 {
		t.Fatalf("the stopped MX has %d messages", got)
	}
	if err := mx.Start(); err != nil {
		t.Fatal(err)
	}
	g = start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := mx.WaitMessages(ctx, total); err != nil {
		t.Fatalf("after restart: %v (%d of %d delivered)", err, len(mx.Messages()), total)
	}
	got := tokens(mx)
	for tok := range sub.acked {
		if got[tok] != 1 {
			t.Errorf("%s delivered %d times, want once", tok, got[tok])
		}
	}
	if err := g.Stop(); err != nil {
		t.Error(err)
	}
}

// waitAll waits (bounded by ctx) until every acknowledged token has reached mx, on the receiver's events.
func waitAll(ctx context.Context, t *testing.T, mx *simnet.Receiver, sub *submitter) {
	t.Helper()
	got := map[string]int{}
	seen, missing := 0, 0
	err := mx.WaitAccepted(ctx, "every acknowledged message", func(msgs []simnet.Received) bool {
		for _, m := range msgs[seen:] {
			if tok, ok := gatewaytest.Token(m.Data); ok {
				got[tok]++
			}
		}
		seen = len(msgs)
		sub.mu.Lock()
		defer sub.mu.Unlock()
		missing = 0
		for tok := range sub.acked {
			if got[tok] == 0 {
				missing++
			}
		}
		return missing == 0
	})
	if err != nil {
		t.Fatalf("%d acknowledged messages still missing at the receiver: %v", missing, err)
	}
}

// A restart with a cached enforce policy while the TXT record is gone, the policy host is down and the MX
// no longer offers STARTTLS: nothing is delivered in plain text (STS-16, STS-63).
func TestRestartKeepsCachedEnforcePolicy_STS63(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	n.DNS.AddTXT("_mta-sts.example.com", "v=STSv1; id=1")
	ph, err := n.ServeMTASTSPolicy("example.com", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	cfg := writeConfig(t, n, dir, "")
	g := start(t, cfg)
	if err := send(g.SMTP, "bob@example.com", "t3-1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mx.WaitMessages(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if m := mx.Messages()[0]; !m.TLS {
		t.Fatal("first message not delivered over TLS")
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}

	n.DNS.Remove("_mta-sts.example.com", 16)
	ph.Stop()
	mx.SetMode(simnet.NotOffered)
	g = start(t, cfg)
	if err := send(g.SMTP, "bob@example.com", "t3-2"); err != nil {
		t.Fatal(err)
	}
	g.WaitLog(regexp.MustCompile(`"msg":"delivery".*"result_type":"starttls-not-supported".*"outcome":"deferred"`), 30*time.Second)
	if got := len(mx.Messages()); got != 1 {
		t.Fatalf("MX has %d messages, want 1: the second must not go in clear text", got)
	}
	if err := g.Stop(); err != nil {
		t.Error(err)
	}
}
