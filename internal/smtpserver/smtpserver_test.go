package smtpserver

import (
	"context"
	"encoding/base64"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/queue"
)

func TestRelayFromRelayNetwork(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	caps := c.ehlo()
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 52428800", "ENHANCEDSTATUSCODES", "DSN", "STARTTLS"} {
		if !strings.Contains(caps, want+"\n") && !strings.HasSuffix(caps, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, caps)
		}
	}
	for _, not := range []string{"REQUIRETLS", "AUTH"} {
		if strings.Contains(caps, not) {
			t.Errorf("cleartext EHLO offers %s:\n%s", not, caps)
		}
	}
	code, msg := c.send("a@example.org", []string{"b@Example.NET"}, simpleMsg)
	if code != 250 || msg != "2.0.0 OK queued as Q1" {
		t.Fatalf("DATA reply = %d %q", code, msg)
	}
	got := h.sub.got()
	if len(got) != 1 {
		t.Fatalf("queued %d messages, want 1", len(got))
	}
	want := queue.Envelope{
		From:       address.MustParsePath("a@example.org"),
		Recipients: []queue.Recipient{{Addr: address.MustParseAddress("b@example.net")}},
		ClientIP:   "127.0.0.1",
	}
	if diff := cmp.Diff(want, got[0].env); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(got[0].body, "\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n") {
		t.Errorf("body does not end with the original message:\n%q", got[0].body)
	}
	c.cmd(221, "", "QUIT")
}

func TestNonASCIIAddressNeedsSMTPUTF8(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.ehlo()
	c.cmd(553, "5.6.7", "MAIL FROM:<jörg@example.org>")
	c.cmd(250, "", "MAIL FROM:<jörg@example.org> SMTPUTF8")
	c.cmd(250, "", "RCPT TO:<zoë@Bücher.example>")
	c.cmd(354, "", "DATA")
	c.raw(simpleMsg)
	c.expect(250, "2.0.0 OK queued")
	got := h.sub.got()
	if len(got) != 1 || !got[0].env.SMTPUTF8 || got[0].env.Recipients[0].Addr.String() != "zoë@xn--bcher-kva.example" {
		t.Fatalf("got %+v", got)
	}
	if !strings.Contains(got[0].body, " with UTF8SMTP\r\n") {
		t.Errorf("Received lacks UTF8SMTP: %q", got[0].body)
	}
}

func TestRelayDeniedOutsideRelayNetworks(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RelayNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	c := h.dial(t)
	c.ehlo()
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	c.cmd(554, "5.7.1", "RCPT TO:<b@example.net>")
	c.cmd(554, "5.7.1", "RCPT TO:<@relay.example:b@example.net>")
	c.cmd(503, "5.5.1", "DATA")
	if n := len(h.sub.got()); n != 0 {
		t.Fatalf("queued %d messages", n)
	}
}

func TestAuthRequiresTLS(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RelayNetworks = nil })
	c := h.dial(t)
	c.ehlo()
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))
	c.cmd(530, "5.7.0", "AUTH PLAIN %s", plain)
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	c.cmd(554, "5.7.1", "RCPT TO:<b@example.net>")
}

func TestAuthWithoutTLSConfigured(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TLS = nil })
	c := h.dial(t)
	if caps := c.ehlo(); strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "AUTH") {
		t.Errorf("EHLO without TLS config offers STARTTLS or AUTH:\n%s", caps)
	}
	c.cmd(538, "5.7.11", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")))
}

func TestAuthAfterSTARTTLSRelays(t *testing.T) {
	tests := []struct {
		name string
		auth func(c *client)
	}{
		{"PLAIN", func(c *client) {
			c.cmd(535, "5.7.8", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")))
			c.cmd(235, "2.7.0", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")))
		}},
		{"PLAIN with mismatched authzid", func(c *client) {
			c.cmd(535, "5.7.8", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("bob\x00alice\x00secret")))
			c.cmd(235, "2.7.0", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("alice\x00alice\x00secret")))
		}},
		{"LOGIN", func(c *client) {
			c.cmd(334, "VXNlcm5hbWU6", "AUTH LOGIN")
			c.cmd(334, "UGFzc3dvcmQ6", "%s", base64.StdEncoding.EncodeToString([]byte("alice")))
			c.cmd(235, "2.7.0", "%s", base64.StdEncoding.EncodeToString([]byte("secret")))
		}},
		{"unknown user", func(c *client) {
			c.cmd(535, "5.7.8", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00mallory\x00secret")))
			c.cmd(235, "2.7.0", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.RelayNetworks = nil })
			c := h.dial(t)
			c.ehlo()
			c.starttls()
			caps := c.ehlo()
			if !strings.Contains(caps, "AUTH PLAIN LOGIN") || !strings.Contains(caps, "REQUIRETLS") {
				t.Errorf("EHLO after STARTTLS:\n%s", caps)
			}
			c.cmd(250, "", "MAIL FROM:<a@example.org>")
			c.cmd(554, "5.7.1", "RCPT TO:<b@example.net>")
			c.cmd(250, "", "RSET")
			tt.auth(c)
			code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg)
			if code != 250 {
				t.Fatalf("DATA reply = %d %s", code, msg)
			}
			got := h.sub.got()
			if len(got) != 1 || !strings.Contains(got[0].body, " with ESMTPSA\r\n") {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestAuthFailureLockout(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.ehlo()
	c.starttls()
	c.ehlo()
	bad := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong"))
	good := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))
	for i := 0; i < maxAuthFailures; i++ {
		// go-smtp closes after too many protocol errors, but AUTH failures are not counted as such.
		c.cmd(535, "5.7.8", "AUTH PLAIN %s", bad)
	}
	c.cmd(454, "4.7.0", "AUTH PLAIN %s", good)
	h.clock.Advance(authFailureWindow)
	c.cmd(235, "2.7.0", "AUTH PLAIN %s", good)
}

func TestDSNParametersKept(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.ehlo()
	c.cmd(250, "", "MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ+2B1+3Dx BODY=8BITMIME")
	c.cmd(250, "", "RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.net")
	c.cmd(250, "", "RCPT TO:<c@example.net> NOTIFY=NEVER")
	c.cmd(250, "", "RCPT TO:<d@example.net>")
	c.cmd(250, "", "RCPT TO:<D@EXAMPLE.net>") // distinct local part
	c.cmd(250, "", "RCPT TO:<d@example.NET>") // duplicate after normalisation: kept once
	c.cmd(354, "", "DATA")
	c.raw(simpleMsg)
	c.expect(250, "2.0.0")
	got := h.sub.got()
	if len(got) != 1 {
		t.Fatalf("queued %d", len(got))
	}
	want := queue.Envelope{
		From:  address.MustParsePath("a@example.org"),
		EnvID: "QQ+1=x",
		Ret:   "HDRS",
		Recipients: []queue.Recipient{
			{Addr: address.MustParseAddress("b@example.net"), Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;b+x@example.net"},
			{Addr: address.MustParseAddress("c@example.net"), Notify: []string{"NEVER"}},
			{Addr: address.MustParseAddress("d@example.net")},
			{Addr: address.MustParseAddress("D@example.net")},
		},
		EightBit: true,
		ClientIP: "127.0.0.1",
	}
	if diff := cmp.Diff(want, got[0].env); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
}

func TestRequireTLS_REQ1_REQ2(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	if caps := c.ehlo(); strings.Contains(caps, "REQUIRETLS") {
		t.Errorf("cleartext EHLO advertises REQUIRETLS")
	}
	c.cmd(530, "5.7.10", "MAIL FROM:<a@example.org> REQUIRETLS")
	c.starttls()
	if caps := c.ehlo(); !strings.Contains(caps, "REQUIRETLS") {
		t.Errorf("EHLO after STARTTLS lacks REQUIRETLS:\n%s", caps)
	}
	c.cmd(250, "", "MAIL FROM:<a@example.org> REQUIRETLS")
	c.cmd(250, "", "RCPT TO:<b@example.net>")
	c.cmd(354, "", "DATA")
	// REQ-3: with REQUIRETLS the header is ignored.
	c.raw("TLS-Required: No\r\n" + simpleMsg)
	c.expect(250, "2.0.0")
	got := h.sub.got()
	if len(got) != 1 || !got[0].env.RequireTLS || got[0].env.TLSOptional {
		t.Fatalf("got %+v, want RequireTLS and not TLSOptional", got)
	}
	if !strings.Contains(got[0].body, "\r\nTLS-Required: No\r\n") {
		t.Errorf("header was not relayed as received")
	}
}

func TestTLSRequiredHeader_REQ3_REQ13(t *testing.T) {
	tests := []struct {
		name         string
		head         string
		wantCode     int
		wantOptional bool
	}{
		{"no header", "Subject: x\r\n", 250, false},
		{"No", "TLS-Required: No\r\n", 250, true},
		{"lower case, folded", "tls-required:\r\n  no \r\n", 250, true},
		{"other value", "TLS-Required: Yes\r\n", 250, false},
		{"two fields", "TLS-Required: No\r\nSubject: x\r\nTLS-Required: No\r\n", 554, false},
		{"in body only", "Subject: x\r\n\r\nTLS-Required: No\r\nTLS-Required: No\r\n", 250, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			c := h.dial(t)
			c.ehlo()
			code, msg := c.send("a@example.org", []string{"b@example.net"}, tt.head+"\r\nbody\r\n.\r\n")
			if code != tt.wantCode {
				t.Fatalf("reply = %d %s, want %d", code, msg, tt.wantCode)
			}
			got := h.sub.got()
			if code != 250 {
				if len(got) != 0 || !strings.HasPrefix(msg, "5.6.0") {
					t.Fatalf("refused message: reply %q, queued %d", msg, len(got))
				}
				c.cmd(250, "", "NOOP")
				return
			}
			if len(got) != 1 || got[0].env.TLSOptional != tt.wantOptional {
				t.Fatalf("got %+v, want TLSOptional=%v", got, tt.wantOptional)
			}
		})
	}
}

// TestSmugglingRefused sends each non-standard end-of-data sequence followed by a smuggled transaction. The
// message must be refused, nothing queued, and the session must answer exactly once and stay in sync.
func TestSmugglingRefused(t *testing.T) {
	smuggled := "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: evil\r\n\r\nsmuggled\r\n"
	seqs := []struct{ name, seq string }{
		{"LF.LF", "\n.\n"},
		{"LF.CRLF", "\n.\r\n"},
		{"CR.LF", "\r.\n"},
		{"CRLF.LF", "\r\n.\n"},
		{"CR.CR", "\r.\r"},
		{"CR.CRLF", "\r.\r\n"},
		{"LF.CR", "\n.\r"},
		{"CRLF.CR.CR", "\r\n.\r.\r"},
		{"bare LF", "\n"},
		{"bare CR", "\r"},
		{"CR CR LF", "\r\r\n"},
		{"LF in header", "X: y\nZ: w\r\n"},
	}
	for _, s := range seqs {
		t.Run(s.name, func(t *testing.T) {
			h := newHarness(t, nil)
			c := h.dial(t)
			c.ehlo()
			code, msg := c.send("a@example.org", []string{"b@example.net"},
				"Subject: x\r\n\r\nbody"+s.seq+smuggled+".\r\n")
			if code != 554 || !strings.HasPrefix(msg, "5.6.0 bare") {
				t.Fatalf("reply = %d %q, want 554 5.6.0 bare ...", code, msg)
			}
			c.cmd(250, "2.0.0", "NOOP") // the next reply belongs to NOOP: no smuggled commands ran
			if got := h.sub.got(); len(got) != 0 {
				t.Fatalf("queued %d messages", len(got))
			}
			if code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
				t.Fatalf("session unusable afterwards: %d %s", code, msg)
			}
		})
	}
}

func TestBDATBareLFRefused(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.ehlo()
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	c.cmd(250, "", "RCPT TO:<b@example.net>")
	chunk := "Subject: x\r\n\r\nbody\n.\nmore\r\n"
	c.raw("BDAT " + strconv.Itoa(len(chunk)) + " LAST\r\n" + chunk)
	c.expect(554, "5.6.0 bare LF")
	c.cmd(250, "", "NOOP")
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	c.cmd(250, "", "RCPT TO:<b@example.net>")
	good := "Subject: x\r\n\r\nbody\r\n"
	c.raw("BDAT " + strconv.Itoa(len(good)) + " LAST\r\n" + good)
	c.expect(250, "2.0.0 OK queued as Q1")
	if got := h.sub.got(); len(got) != 1 || !strings.HasSuffix(got[0].body, "\r\n"+good) {
		t.Fatalf("got %+v", got)
	}
}

func TestOversizeRefused(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxMessageBytes = 1000 })
	c := h.dial(t)
	c.ehlo()
	c.cmd(552, "5.3.4", "MAIL FROM:<a@example.org> SIZE=5000")
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 20) + ".\r\n"
	code, msg := c.send("a@example.org", []string{"b@example.net"}, big)
	if code != 552 || !strings.HasPrefix(msg, "5.3.4") {
		t.Fatalf("reply = %d %q, want 552 5.3.4", code, msg)
	}
	if got := h.sub.got(); len(got) != 0 {
		t.Fatalf("queued %d messages", len(got))
	}
	if code, _ := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
		t.Fatalf("session unusable afterwards: %d", code)
	}
}

func TestTooManyRecipients(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRecipients = 2 })
	c := h.dial(t)
	c.ehlo()
	c.cmd(250, "", "MAIL FROM:<>")
	c.cmd(503, "5.5.1", "MAIL FROM:<x@example.org>")
	c.cmd(250, "", "RCPT TO:<a@example.net>")
	c.cmd(250, "", "RCPT TO:<b@example.net>")
	c.cmd(452, "4.5.3", "RCPT TO:<c@example.net>")
	c.cmd(354, "", "DATA")
	c.raw(simpleMsg)
	c.expect(250, "2.0.0")
	got := h.sub.got()
	if len(got) != 1 || len(got[0].env.Recipients) != 2 || got[0].env.From.String() != "" {
		t.Fatalf("got %+v", got)
	}
	if strings.Contains(got[0].body, "for <") {
		t.Errorf("Received names a recipient of a multi-recipient message:\n%s", got[0].body)
	}
}

func TestOpenRelayTricksRefused(t *testing.T) {
	tests := []struct {
		rcpt string
		code int
		enh  string
	}{
		{"<user@example.net@relay.example>", 553, "5.1.3"},
		{`<"user@other.example"@example.net>`, 553, "5.1.3"},
		{`<"user%other.example"@example.net>`, 553, "5.1.3"},
		{"<user@example.net%other.example>", 553, "5.1.3"},
		{"<user@example.net!other.example>", 553, "5.1.3"},
		{"<other.example!user@example.net>", 250, ""},      // legal local part; relayed to example.net only
		{"<user%other.example@example.net>", 553, "5.1.3"}, // legal, but package address refuses the percent hack
		{"<user@[192.0.2.1]>", 553, "5.1.2"},
		{"<user@example.net.>", 250, ""},
		{"<user\x00x@example.net>", 553, "5.1.3"},
		{"<user\rx@example.net>", 500, "5.5.2"}, // a bare CR refuses the session
		{"<user@exa\rmple.net>", 500, "5.5.2"},
		{"<user@exa mple.net>", 501, "5.5.2"},
		{"<>", 501, ""},
	}
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			h := newHarness(t, nil)
			c := h.dial(t)
			c.ehlo()
			c.cmd(250, "", "MAIL FROM:<a@example.org>")
			c.raw("RCPT TO:" + tt.rcpt + "\r\n")
			c.expect(tt.code, tt.enh)
		})
	}
}

// TestSourceRouteStripped: go-smtp drops a source route before the session sees it (RFC 5321 Section
// 4.1.1.3 lets a server ignore it); the relay decision never looks at the address, so nothing is gained.
func TestSourceRouteStripped(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.ehlo()
	code, _ := c.send("a@example.org", []string{"@relay.example:b@example.net"}, simpleMsg)
	if got := h.sub.got(); code != 250 || len(got) != 1 || got[0].env.Recipients[0].Addr.String() != "b@example.net" {
		t.Fatalf("code %d, got %+v", code, got)
	}
}

func TestCommandInjectionRefused(t *testing.T) {
	tests := []struct {
		name, line string
		code       int
	}{
		{"CR in ENVID", "MAIL FROM:<a@example.org> ENVID=ab\rRCPT TO:<c@example.net>", 500}, // 500: session refused
		{"xtext CR in ENVID", "MAIL FROM:<a@example.org> ENVID=ab+0DRCPT", 501},
		{"NUL in ENVID", "MAIL FROM:<a@example.org> ENVID=ab\x00cd", 501},
		{"CR in sender", "MAIL FROM:<a\r@example.org>", 500},
		{"NUL in sender", "MAIL FROM:<a@exam\x00ple.org>", 553},
		{"source route sender", "MAIL FROM:<a@example.org@evil.example>", 553},
		{"bad SIZE", "MAIL FROM:<a@example.org> SIZE=1\r0", 500},
		{"unknown BODY", "MAIL FROM:<a@example.org> BODY=BINARYMIME", 504},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			c := h.dial(t)
			c.ehlo()
			c.raw(tt.line + "\r\n")
			c.expect(tt.code, "")
			if tt.code == 500 {
				c.closed() // a bare CR in a command ends the session
				return
			}
			c.cmd(503, "5.5.1", "RCPT TO:<b@example.net>") // no transaction was opened
		})
	}
	t.Run("control char in ORCPT", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.cmd(250, "", "MAIL FROM:<a@example.org>")
		c.cmd(501, "5.5.4", `RCPT TO:<b@example.net> ORCPT=utf-8;b\x{01}@example.net`)
	})
}

var errDiskFull = errors.New("disk full")

func TestSubmitErrorIsTemporaryAndRetryable(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.TempError = func(err error) *smtp.SMTPError {
			if errors.Is(err, errDiskFull) {
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage"}
			}
			return nil
		}
	})
	c := h.dial(t)
	c.ehlo()
	h.sub.setFail(errors.New("boom"))
	if code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 451 || !strings.HasPrefix(msg, "4.3.0") {
		t.Fatalf("reply = %d %q, want 451 4.3.0", code, msg)
	}
	h.sub.setFail(errDiskFull)
	if code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 452 || !strings.HasPrefix(msg, "4.3.1") {
		t.Fatalf("reply = %d %q, want 452 4.3.1", code, msg)
	}
	h.sub.setFail(nil)
	if code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
		t.Fatalf("retry: %d %q", code, msg)
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	a := h.dial(t)
	h.dial(t)
	third := h.dialNoGreet(t)
	third.expect(421, "4.7.0")
	third.closed()
	a.cmd(221, "", "QUIT")
	a.closed() // the slot is released before the socket closes
	h.dial(t).ehlo()
}

func TestRateLimitPerIP(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RatePerIP = 2 })
	c := h.dial(t)
	c.ehlo()
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	c.cmd(250, "", "RSET")
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	c.cmd(250, "", "RSET")
	c.cmd(450, "4.7.1", "MAIL FROM:<a@example.org>")
	h.clock.Advance(30 * time.Second) // one token back
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
}

func TestReceivedHeader_SMTP16(t *testing.T) {
	t.Run("cleartext, one recipient", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.cmd(250, "", "EHLO client(evil)\x01.test")
		c.send("a@example.org", []string{"b@example.net"}, "Received: from earlier\r\n"+simpleMsg)
		got := h.sub.got()
		want := "Received: from client_evil__.test ([127.0.0.1])\r\n\tby mx.test (mxgate) with ESMTP\r\n" +
			"\tfor <b@example.net>;\r\n\tWed, 04 Mar 2026 05:06:07 +0000\r\n" +
			"Received: from earlier\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
		if len(got) != 1 || got[0].body != want {
			t.Fatalf("got %+v\nwant body:\n%q", got, want)
		}
	})
	t.Run("TLS, two recipients", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t)
		c.ehlo()
		c.starttls()
		c.ehlo()
		c.send("a@example.org", []string{"b@example.net", "c@example.net"}, simpleMsg)
		got := h.sub.got()
		if len(got) != 1 {
			t.Fatal("not queued")
		}
		head, _, _ := strings.Cut(got[0].body, "From: a@example.org")
		wantPrefix := "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (mxgate) with ESMTPS\r\n\t(version=TLS1.3 cipher=TLS_"
		if !strings.HasPrefix(head, wantPrefix) || !strings.HasSuffix(head, ";\r\n\tWed, 04 Mar 2026 05:06:07 +0000\r\n") || strings.Contains(head, "for <") {
			t.Fatalf("Received header:\n%s", head)
		}
	})
}

func TestShutdownLetsTransactionFinish(t *testing.T) {
	h := newHarness(t, nil)
	busy := h.dial(t)
	busy.ehlo()
	busy.cmd(250, "", "MAIL FROM:<a@example.org>")
	busy.cmd(250, "", "RCPT TO:<b@example.net>")
	idle := h.dial(t)
	idle.ehlo()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	idle.expect(421, "")
	idle.closed()
	busy.cmd(354, "", "DATA")
	busy.raw(simpleMsg)
	busy.expect(250, "2.0.0")
	busy.expect(421, "") // drained once its transaction ended
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-h.serve; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	h.serve <- nil // for the cleanup
	if len(h.sub.got()) != 1 {
		t.Fatal("message not queued")
	}
}

func TestShutdownDeadlineClosesConnections(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t)
	c.ehlo()
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	c.closed()
}

func TestNewConfigErrors(t *testing.T) {
	_, err := New(Config{MaxRecipients: -1, MaxLineLength: 10}, nil, nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"hostname: required", "submitter: required", "MaxRecipients: must not be negative", "MaxLineLength: must be at least 1000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
