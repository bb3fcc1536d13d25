package smtpserver

import (
	"strings"
	"testing"
)

// TestHopCountLimit_SMTP24: a message with more than 100 Received fields is in a mail loop and is refused
// with 554 5.4.6; one with exactly 100 is accepted (RFC 5321 Section 6.3).
func TestHopCountLimit_SMTP24(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	msg := func(hops int) string {
		var b strings.Builder
		for i := 0; i < hops; i++ {
			// Folded and in mixed case, as real trace fields come.
			b.WriteString("rEceived: from hop.example\r\n\tby next.example; Mon, 2 Mar 2026 09:00:00 +0000\r\n")
		}
		b.WriteString("From: a@example.org\r\nSubject: loop\r\n\r\nbody\r\n.\r\n")
		return b.String()
	}
	c := h.dial(t)
	c.ehlo()
	if code, text := c.send("a@example.org", []string{"b@example.com"}, msg(101)); code != 554 || !strings.HasPrefix(text, "5.4.6") {
		t.Fatalf("101 Received fields: reply %d %q, want 554 5.4.6", code, text)
	}
	if got := h.sub.got(); len(got) != 0 {
		t.Fatalf("a looping message was queued: %d submissions", len(got))
	}
	// The session goes on: the next transaction, at the limit, is accepted.
	if code, text := c.send("a@example.org", []string{"b@example.com"}, msg(100)); code != 250 {
		t.Fatalf("100 Received fields: reply %d %q, want 250", code, text)
	}
	if got := h.sub.got(); len(got) != 1 {
		t.Fatalf("%d submissions, want 1", len(got))
	}
	if !strings.Contains(h.logs.String(), `"hops":101`) {
		t.Errorf("the refusal is not logged with its hop count:\n%s", h.logs.String())
	}
}
