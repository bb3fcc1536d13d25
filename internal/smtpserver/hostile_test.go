package smtpserver

import (
	"strings"
	"testing"
)

// Overlong lines: a DATA line beyond MaxLineLength is refused with 500 5.5.2 and nothing is queued (never
// silently truncated or split); an overlong command is refused; the limit itself is accepted.
func TestOverlongLinesRefused(t *testing.T) {
	const limit = 1000
	t.Run("DATA line over the limit", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxLineLength = limit })
		c := h.dial(t)
		c.ehlo()
		long := "Subject: x\r\n\r\n" + strings.Repeat("a", 4*limit) + "\r\n.\r\n"
		code, msg := c.send("a@example.org", []string{"b@example.net"}, long)
		if code != 500 || !strings.HasPrefix(msg, "5.5.2") {
			t.Fatalf("reply = %d %q, want 500 5.5.2", code, msg)
		}
		if got := h.sub.got(); len(got) != 0 {
			t.Fatalf("queued %d messages with an overlong line", len(got))
		}
	})
	t.Run("DATA line at the limit", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxLineLength = limit })
		c := h.dial(t)
		c.ehlo()
		line := strings.Repeat("a", limit-2) // with its CRLF: exactly the limit
		code, msg := c.send("a@example.org", []string{"b@example.net"}, "Subject: x\r\n\r\n"+line+"\r\n.\r\n")
		if code != 250 {
			t.Fatalf("reply = %d %q, want 250 for a line of exactly %d octets", code, msg, limit)
		}
		if got := h.sub.got(); len(got) != 1 || !strings.Contains(got[0].body, "\r\n"+line+"\r\n") {
			t.Fatalf("queued body does not hold the full line")
		}
	})
	t.Run("overlong command", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxLineLength = limit })
		c := h.dial(t)
		c.ehlo()
		c.raw("MAIL FROM:<" + strings.Repeat("a", 4*limit) + "@example.org>\r\n")
		code, _ := c.read()
		if code < 500 || code > 599 {
			t.Fatalf("overlong MAIL FROM answered %d, want 5xx", code)
		}
		if got := h.sub.got(); len(got) != 0 {
			t.Fatalf("queued %d messages", len(got))
		}
	})
	t.Run("overlong local part", func(t *testing.T) {
		// RFC 5321 Section 4.5.3.1.1: local part at most 64 octets.
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.cmd(250, "", "MAIL FROM:<a@example.org>")
		c.raw("RCPT TO:<" + strings.Repeat("b", 65) + "@example.net>\r\n")
		if code, msg := c.read(); code < 500 || code > 599 {
			t.Fatalf("65-octet local part answered %d %q, want 5xx", code, msg)
		}
	})
}

// Commands ended by a bare LF or CR. A bare CR does not end a command: the whole line is one (invalid)
// command and no transaction starts. A bare LF does end one (go-smtp reads commands with net/textproto,
// which accepts LF; RFC 5321 Section 2.3.8 forbids clients to send it but does not require servers to
// refuse it), so each piece is still a command of its own, checked like any other: a relay trick hidden
// behind a bare LF is refused and nothing is queued. (Postfix 3.9 goes further and refuses bare LF in
// commands; see RELIABILITY.md.)
func TestBareLineEndingsInCommands(t *testing.T) {
	t.Run("bare CR", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.raw("MAIL FROM:<a@example.org>\rRCPT TO:<b@example.net>\rDATA\r\n")
		if code, msg := c.read(); code < 500 {
			t.Fatalf("MAIL line with bare CRs answered %d %q, want 5xx", code, msg)
		}
		c.cmd(502, "5.5.1", "DATA") // no transaction under way
	})
	t.Run("bare LF", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.raw("MAIL FROM:<a@example.org>\nRCPT TO:<user%other.example@example.net>\nDATA\r\n")
		c.expect(250, "")                    // MAIL
		c.expect(553, "5.1.3")               // RCPT: the percent hack is refused as on its own line
		if code, _ := c.read(); code < 500 { // DATA without a recipient
			t.Fatalf("DATA without an accepted recipient answered %d", code)
		}
		c.cmd(250, "", "NOOP")
		if got := h.sub.got(); len(got) != 0 {
			t.Fatalf("queued %d messages", len(got))
		}
	})
}
