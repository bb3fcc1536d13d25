package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
				if err := send(g.smtp, "bob@example.com", tok); err != nil {
					t.Errorf("submitting %s: %v", tok, err)
					return
				}
				sub.ack(tok)
			}
		}()
	}
	wg.Wait()
	if err := g.stop(); err != nil {
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
	if err := g.stop(); err != nil {
		t.Error(err)
	}
}

// Crash safety: messages from 8 concurrent clients while the daemon is SIGKILLed at random moments and
// restarted; afterwards every acknowledged message reaches the receiver. Duplicates (a crash between the
// receiver's 250 and our bookkeeping) are counted and printed.
func TestCrashSafetySIGKILL(t *testing.T) {
	crashSafety(t, 2000, 5)
}

// The long variant (RELIABILITY.md): 10,000 messages, 8 clients, 20 SIGKILLs. MXGATE_LONG=1 runs it.
func TestCrashSafetySIGKILLLong(t *testing.T) {
	if os.Getenv("MXGATE_LONG") == "" {
		t.Skip("set MXGATE_LONG=1 to run the 10,000-message, 20-SIGKILL crash test")
	}
	crashSafety(t, 10000, 20)
}

// inFlightBound is the most messages one gateway can have handed to a receiver without recording the
// outcome: queue.concurrency batches of at most the default MaxBatch (50) messages (see writeConfig).
const inFlightBound = 16 * 50

// crashSafety submits total messages from 8 clients and SIGKILLs the gateway kills times at random
// acknowledgement counts, restarting it each time; every acknowledged message must reach the receiver,
// and duplicates must not exceed what can be in flight at the kills.
func crashSafety(t *testing.T, total, kills int) {
	started := time.Now()
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	cfg := writeConfig(t, n, dir, "")
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	// Kill points are acknowledgement counts, at least 50 apart so that each falls in its own round.
	killAt := map[int]bool{}
	for len(killAt) < kills {
		k := 200 + rnd.IntN(total-400)
		near := false
		for p := range killAt {
			near = near || (p-k < 50 && k-p < 50)
		}
		if !near {
			killAt[k] = true
		}
	}

	sub := &submitter{acked: map[string]bool{}}
	var next atomic.Int64
	var killsDone atomic.Int64
	var pendingMu sync.Mutex
	var pending []string
	for round := 0; ; round++ {
		g := start(t, cfg)
		var wg sync.WaitGroup
		var killed atomic.Bool
		onAck := func(tok string) {
			if killAt[sub.ack(tok)] && killed.CompareAndSwap(false, true) {
				killsDone.Add(1)
				g.kill()
			}
		}
		for c := 0; c < 8; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !killed.Load() {
					tok, ok := nextToken(&next, &pendingMu, &pending, total)
					if !ok {
						return
					}
					if err := send(g.smtp, "bob@example.com", tok); err != nil {
						// Not acknowledged: submit it again, to this process or the next.
						if !retry(tok, &killed, g, onAck) {
							pendingMu.Lock()
							pending = append(pending, tok)
							pendingMu.Unlock()
						}
						continue
					}
					onAck(tok)
				}
			}()
		}
		wg.Wait()
		pendingMu.Lock()
		left := len(pending)
		pendingMu.Unlock()
		if !killed.Load() && left == 0 {
			// All submitted: let it drain, then check.
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			waitAll(ctx, t, mx, sub)
			cancel()
			g.stop()
			break
		}
		if round > kills+2 {
			t.Fatal("too many rounds")
		}
	}
	if int(killsDone.Load()) != kills {
		// Two kill points taken by concurrent clients in one round count once.
		t.Logf("%d of %d planned SIGKILLs happened", killsDone.Load(), kills)
	}
	kills = int(killsDone.Load())
	got := tokens(mx)
	missing, dups := 0, 0
	for tok := range sub.acked {
		switch c := got[tok]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("crash safety: %d acknowledged, %d SIGKILLs, %d missing, %d duplicates delivered, %v", len(sub.acked), kills, missing, dups, time.Since(started).Round(time.Second))
	fmt.Printf("crash-safety: messages=%d acknowledged=%d kills=%d missing=%d duplicates=%d (bound %d) elapsed=%v\n",
		total, len(sub.acked), kills, missing, dups, kills*inFlightBound, time.Since(started).Round(time.Second))
	if missing != 0 {
		t.Fatalf("%d acknowledged messages never reached the receiver", missing)
	}
	if len(sub.acked) != total {
		t.Errorf("%d acknowledged, want all %d", len(sub.acked), total)
	}
	if dups > kills*inFlightBound {
		t.Errorf("%d duplicates after %d kills, more than could have been in flight (%d)", dups, kills, kills*inFlightBound)
	}
}

// nextToken returns a token to submit: one a dead gateway did not acknowledge, else a new one.
func nextToken(next *atomic.Int64, mu *sync.Mutex, pending *[]string, total int) (string, bool) {
	mu.Lock()
	if len(*pending) > 0 {
		tok := (*pending)[0]
		*pending = (*pending)[1:]
		mu.Unlock()
		return tok, true
	}
	mu.Unlock()
	i := int(next.Add(1))
	if i > total {
		return "", false
	}
	return fmt.Sprintf("t2-%d", i), true
}

// retry submits tok until this gateway acknowledges it; false when the gateway was killed first.
func retry(tok string, killed *atomic.Bool, g *gateway, onAck func(string)) bool {
	for !killed.Load() {
		if err := send(g.smtp, "bob@example.com", tok); err == nil {
			onAck(tok)
			return true
		}
		select {
		case <-g.done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// waitAll waits (bounded by ctx) until every acknowledged token has reached mx, on the receiver's events.
func waitAll(ctx context.Context, t *testing.T, mx *simnet.Receiver, sub *submitter) {
	t.Helper()
	got := map[string]int{}
	seen, missing := 0, 0
	err := mx.WaitAccepted(ctx, "every acknowledged message", func(msgs []simnet.Received) bool {
		for _, m := range msgs[seen:] {
			if mm := tokenRE.FindSubmatch(m.Data); mm != nil {
				got[string(mm[1])]++
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
	if err := send(g.smtp, "bob@example.com", "t3-1"); err != nil {
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
	if err := g.stop(); err != nil {
		t.Fatal(err)
	}

	n.DNS.Remove("_mta-sts.example.com", 16)
	ph.Stop()
	mx.SetMode(simnet.NotOffered)
	g = start(t, cfg)
	if err := send(g.smtp, "bob@example.com", "t3-2"); err != nil {
		t.Fatal(err)
	}
	g.waitLog(regexp.MustCompile(`"msg":"delivery".*"result_type":"starttls-not-supported".*"outcome":"deferred"`), 30*time.Second)
	if got := len(mx.Messages()); got != 1 {
		t.Fatalf("MX has %d messages, want 1: the second must not go in clear text", got)
	}
	if err := g.stop(); err != nil {
		t.Error(err)
	}
}
