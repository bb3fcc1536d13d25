package smtpserver

import (
	"encoding/base64"
	"strings"
	"testing"
)

// goSMTPJokes are reply texts upstream go-smtp v0.25.1 writes on its own; third_party/go-smtp replaces each
// with the standard text, and no reply of a session may carry one of them again.
var goSMTPJokes = []string{
	"Roger, accepting mail", "I'll make sure", "Go ahead", "I have successfully done nothing", "Session reset",
	"Bye", "Quiting", "bye bye", "sorry", "Please introduce yourself", "Please authenticate first",
	"Missing MAIL FROM command.", "Missing RCPT TO command.", "Was expecting", "Continue",
}

// TestReplyTextsAreStandard_SMTP reads every reply of a full submission session over a real socket
// (greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET, NOOP, VRFY, commands out of sequence, QUIT) and
// checks each against the RFC 5321 / RFC 3463 / RFC 4954 reply a mail administrator expects.
func TestReplyTextsAreStandard_SMTP(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RelayNetworks = nil })
	c := h.dialNoGreet(t)
	var replies []string
	step := func(wantCode int, want, format string, args ...any) {
		t.Helper()
		if format != "" {
			if err := c.tp.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		code, msg := c.read()
		replies = append(replies, msg)
		if code != wantCode || msg != want {
			t.Errorf("%q: reply = %d %q, want %d %q", format, code, msg, wantCode, want)
		}
	}
	firstLine := func(wantCode int, want, format string) {
		t.Helper()
		if err := c.tp.PrintfLine("%s", format); err != nil {
			t.Fatal(err)
		}
		code, msg := c.read()
		replies = append(replies, msg)
		if line, _, _ := strings.Cut(msg, "\n"); code != wantCode || line != want {
			t.Errorf("%q: reply = %d %q, want %d %q...", format, code, msg, wantCode, want)
		}
	}

	step(220, testHost+" ESMTP Service Ready", "")
	firstLine(250, "Hello client.test", "EHLO client.test")
	step(503, "5.5.1 Need MAIL command first", "RCPT TO:<b@example.net>")
	step(503, "5.5.1 Need RCPT command first", "DATA")
	step(220, "2.0.0 Ready to start TLS", "STARTTLS")
	c.handshake()
	firstLine(250, "Hello client.test", "EHLO client.test")
	step(235, "2.7.0 Authentication successful", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")))
	step(250, "2.1.0 Sender <a@example.org> OK", "MAIL FROM:<a@example.org>")
	step(503, "5.5.1 Nested MAIL command: RSET first", "MAIL FROM:<a@example.org>")
	step(250, "2.1.5 Recipient <b@example.net> OK", "RCPT TO:<b@example.net>")
	step(354, "Start mail input; end with <CRLF>.<CRLF>", "DATA")
	c.raw(simpleMsg)
	step(250, "2.0.0 OK queued as Q1", "")
	step(250, "2.1.0 Sender <a@example.org> OK", "MAIL FROM:<a@example.org>")
	step(250, "2.0.0 OK", "RSET")
	step(250, "2.0.0 OK", "NOOP")
	step(252, "2.5.0 Cannot VRFY user, but will accept message", "VRFY alice")
	step(221, "2.0.0 Service closing transmission channel", "QUIT")

	for _, r := range replies {
		for _, old := range goSMTPJokes {
			if strings.Contains(r, old) {
				t.Errorf("reply %q carries go-smtp's own text %q", r, old)
			}
		}
	}
}
