package smtpserver

import (
	"crypto/tls"
	"fmt"
	"net/textproto"
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

// Commands ended by a bare LF or holding a bare CR: like Postfix 3.9 (smtpd_forbid_bare_newline), the session
// is refused with 500 5.5.2 and closed, so a relay trick or a second command hidden behind one never runs.
// Commands sent before the bad line in the same packet are still answered first.
func TestBareLineEndingsInCommands(t *testing.T) {
	for _, tt := range []struct {
		name, send, want string
		before           []int // replies expected before the refusal
	}{
		{"bare LF ends MAIL", "MAIL FROM:<a@example.org>\nRCPT TO:<user%other.example@example.net>\r\nDATA\r\n", "bare LF", nil},
		{"bare CR inside MAIL", "MAIL FROM:<a@example.org>\rRCPT TO:<b@example.net>\rDATA\r\n", "bare CR", nil},
		{"bare CR before LF only at the end", "NOOP\r\r\n", "bare CR", nil},
		{"LF alone as the only line", "\n", "bare LF", nil},
		{"pipelined: good commands first", "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRSET\n", "bare LF", []int{250, 250}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			c := h.dial(t)
			c.ehlo()
			c.raw(tt.send)
			for _, want := range tt.before {
				c.expect(want, "")
			}
			msg := c.expect(500, "5.5.2")
			if !strings.Contains(msg, tt.want) {
				t.Errorf("refusal %q does not name the %s", msg, tt.want)
			}
			c.closed()
			if got := h.sub.got(); len(got) != 0 {
				t.Fatalf("queued %d messages", len(got))
			}
			if !strings.Contains(h.logs.String(), "session refused: "+tt.want+" in a command") {
				t.Errorf("the refusal is not logged:\n%s", h.logs.String())
			}
		})
	}
}

// TestBareLineEndingsInDataNotCommands: bare line endings inside DATA content or a BDAT chunk are message
// data, refused with 554 5.6.0 while the session goes on; a DATA that was refused leaves the next line a
// command again; after STARTTLS the guard steps aside.
func TestBareLineEndingsInDataNotCommands(t *testing.T) {
	t.Run("DATA content", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		if code, _ := c.send("a@example.org", []string{"b@example.net"}, "Subject: x\r\n\r\nbare\nLF\r\n.\r\n"); code != 554 {
			t.Fatalf("bare LF in data: %d, want 554", code)
		}
		if code, _ := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
			t.Fatalf("next transaction: %d, want 250", code)
		}
	})
	t.Run("DATA content sent without waiting for 354", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.raw("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: x\r\n\r\nbare\nLF\r\n.\r\n")
		c.expect(250, "")
		c.expect(250, "")
		c.expect(354, "")
		c.expect(554, "5.6.0")
		c.cmd(250, "", "NOOP")
	})
	t.Run("BDAT chunk", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.cmd(250, "", "MAIL FROM:<a@example.org>")
		c.cmd(250, "", "RCPT TO:<b@example.net>")
		chunk := "Subject: x\r\n\r\nbare\nLF and bare\rCR\r\n"
		c.raw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
		c.expect(554, "5.6.0")
		c.cmd(250, "", "NOOP")
	})
	t.Run("refused DATA", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.cmd(503, "5.5.1", "DATA") // no transaction: the next lines are commands, and checked
		c.raw("NOOP\n")
		c.expect(500, "5.5.2")
		c.closed()
	})
	t.Run("after STARTTLS", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.starttls()
		c.ehlo()
		if code, _ := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
			t.Fatalf("transaction over TLS: %d, want 250", code)
		}
	})
}

// TestCommandGuardParsesAsGoSMTP: the guard reads each line as go-smtp v0.25.1 does, so what it takes for a
// command, a BDAT chunk or DATA content is what the server takes for it; a bare LF in what the server reads
// as a command is always refused, and message data is never refused as a command.
func TestCommandGuardParsesAsGoSMTP(t *testing.T) {
	t.Run("BDAT with a tab is a bad command, not a chunk", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.raw("BDAT\t10\r\nNOOP\nRSET\r\n")
		c.expect(501, "5.5.2")
		c.expect(500, "5.5.2")
		c.closed()
	})
	t.Run("DATA with a trailing space is refused, and what follows are commands", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.cmd(250, "", "MAIL FROM:<a@example.org>")
		c.cmd(250, "", "RCPT TO:<b@example.net>")
		c.raw("DATA \r\nNOOP\n")
		c.expect(501, "5.5.2")
		c.expect(500, "5.5.2")
		c.closed()
	})
	t.Run("commands pipelined after a refused DATA are commands", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.raw("DATA\r\nNOOP\n")
		c.expect(503, "5.5.1")
		c.expect(500, "5.5.2")
		c.closed()
	})
	t.Run("STARTTLS followed by junk is STARTTLS", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.raw("STARTTLSx\r\n")
		c.expect(220, "2.0.0")
		tc := tls.Client(c.conn, &tls.Config{RootCAs: c.ca.Pool(), ServerName: testHost, Time: c.ca.Now})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake after STARTTLSx: %v", err)
		}
		c.conn, c.tp = tc, textproto.NewConn(tc)
		c.ehlo()
	})
	t.Run("BDAT with its size beyond 64 bytes of spaces", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.cmd(250, "", "MAIL FROM:<a@example.org>")
		c.cmd(250, "", "RCPT TO:<b@example.net>")
		chunk := "Subject: x\r\n\r\nbare\nLF\r\n"
		c.raw(fmt.Sprintf("BDAT%s%d LAST\r\n%s", strings.Repeat(" ", 80), len(chunk), chunk))
		c.expect(554, "5.6.0")
		c.cmd(250, "", "NOOP")
	})
	t.Run("a bare CR before the dot line does not end DATA", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		code, _ := c.send("a@example.org", []string{"b@example.net"}, "Subject: x\r\n\r\n.\r\r\n.\r\nfoo\nbar\r\n.\r\n")
		if code != 554 {
			t.Fatalf("data with bare line endings: %d, want 554", code)
		}
		c.cmd(250, "", "NOOP")
	})
}
