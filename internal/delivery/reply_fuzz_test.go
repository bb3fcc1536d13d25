package delivery

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/queue"
)

// FuzzReplyResult: the one place an SMTP reply becomes an outcome. 2xx is delivered, 5xx failed, anything
// else (4xx, nonsense codes, transport errors) deferred: temporary unless proven permanent. The enhanced
// code is kept only when given, the host and stage are carried, and nothing panics.
func FuzzReplyResult(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzReplyResult, plus these.
	f.Add(250, 2, 0, 0, "OK", false)
	f.Add(450, 4, 2, 1, "mailbox busy", false)
	f.Add(550, 5, 1, 1, "no such user", false)
	f.Add(421, -1, -1, -1, "closing", false)
	f.Add(0, 0, 0, 0, "", true)
	f.Add(999, 9, 9, 9, "\r\nRCPT TO:<x>", false)
	f.Add(-5, 5, 7, 1, "weird", false)
	f.Fuzz(func(t *testing.T, code, c0, c1, c2 int, msg string, transport bool) {
		var err error = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{c0, c1, c2}, Message: msg}
		if transport {
			err = fmt.Errorf("read tcp: %w", errors.New(msg))
		}
		r := replyResult("mx1.example.com", err, "RCPT")
		if r.RemoteMTA != "mx1.example.com" || !strings.HasPrefix(r.Text, "RCPT") {
			t.Fatalf("result %+v lost the host or the stage", r)
		}
		if transport {
			if r.Outcome != queue.Deferred || r.Code != 451 || r.Enhanced != "4.4.2" {
				t.Fatalf("transport error classified %+v, want deferred 451 4.4.2", r)
			}
			return
		}
		want := queue.Deferred
		switch {
		case code >= 200 && code < 300:
			want = queue.Delivered
		case code >= 500 && code < 600:
			want = queue.Failed
		}
		if r.Outcome != want || r.Code != code {
			t.Fatalf("reply %d classified %s (code %d), want %s", code, r.Outcome, r.Code, want)
		}
		ec := smtp.EnhancedCode{c0, c1, c2}
		if ec == (smtp.EnhancedCode{}) || ec == smtp.NoEnhancedCode {
			if r.Enhanced != "" {
				t.Fatalf("no enhanced code given, result has %q", r.Enhanced)
			}
		} else if want := fmt.Sprintf("%d.%d.%d", c0, c1, c2); r.Enhanced != want {
			t.Fatalf("enhanced code %v became %q, want %q", ec, r.Enhanced, want)
		}
	})
}
