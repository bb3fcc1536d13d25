package delivery_test

import (
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/simnet"
)

// RFC 8689 Section 4.1 (REQ-4): the REQUIRETLS tag belongs to the message, so every recipient's copy carries
// it: one transaction for both recipients, with MAIL FROM ... REQUIRETLS.
func TestRequireTLSTagForEveryRecipient_REQ4(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{RequireTLS: true})
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	j := job("m1", "bob@example.com", "carol@example.com")
	j.RequireTLS = true
	for _, r := range h.deliver("example.com", j) {
		if r.Outcome != queue.Delivered {
			t.Fatalf("result %+v, want delivered", r)
		}
	}
	m := mx1.Messages()
	if len(m) != 1 || len(m[0].To) != 2 || !m[0].MailOpts.RequireTLS {
		t.Fatalf("mx1 got %+v, want one REQUIRETLS transaction for both recipients", m)
	}
}

// RFC 8689 Section 4.2.1 / RFC 7525 (REQ-10): TLS below 1.2 is not negotiated, so a REQUIRETLS message is
// not sent to a server that offers only TLS 1.1.
func TestRequireTLSRefusesOldTLS_REQ10(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{RequireTLS: true, TLSMaxVersion: tls.VersionTLS11})
	h.sts("example.com", "1", "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n")
	r := one(t, h.deliver("example.com", requireTLSJob("m1")))
	if r.Outcome == queue.Delivered || len(mx1.Messages()) != 0 {
		t.Fatalf("result %+v, want not delivered over TLS 1.1", r)
	}
}

// RFC 8689 Section 4.2.2 (REQ-12): a TLS-Required: No message to a server that insists on STARTTLS when TLS
// cannot be negotiated fails with the server's reply, so the sender gets a DSN.
func TestTLSRequiredNoServerInsistsOnTLS_REQ12(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{
		STARTTLS: simnet.HandshakeFail,
		MailReply: func(string, smtp.MailOptions) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
		},
	})
	j := job("m1", "bob@example.com")
	j.TLSOptional = true
	r := one(t, h.deliver("example.com", j))
	if r.Outcome != queue.Failed || r.Code != 530 {
		t.Fatalf("result %+v, want failed 530 (the queue then sends the DSN)", r)
	}
}

// RFC 5321 Section 4.5.4.1 (SMTP-12): a 5yz reply to MAIL is not cached: the next message to the same host
// is tried.
func TestMailRejectionNotCached_SMTP12(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var calls atomic.Int32
	mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{
		MailReply: func(string, smtp.MailOptions) *smtp.SMTPError {
			if calls.Add(1) == 1 {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender rejected"}
			}
			return nil
		},
	})
	if r := one(t, h.deliver("example.com", job("m1", "bob@example.com"))); r.Outcome != queue.Failed || r.Code != 550 {
		t.Fatalf("first message: %+v, want failed 550", r)
	}
	if r := one(t, h.deliver("example.com", job("m2", "bob@example.com"))); r.Outcome != queue.Delivered {
		t.Fatalf("second message: %+v, want delivered (no cached rejection)", r)
	}
	if len(mx1.Messages()) != 1 {
		t.Errorf("mx1 got %d messages, want 1", len(mx1.Messages()))
	}
}

// stall returns a reply hook that blocks until the test ends, and a channel that receives a value each
// time the receiver enters it.
func stall(t *testing.T) (wait func(), entered chan struct{}) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	entered = make(chan struct{}, 8)
	return func() {
		entered <- struct{}{}
		<-release
	}, entered
}

// RFC 5321 Section 4.5.3.2 (SMTP-14): timeouts are per command. A receiver that never answers MAIL is given
// up on when the command timeout fires, and the next MX gets the message; one that never answers the end of
// DATA is given up on when the DATA timeout fires, and the recipient is deferred (not failed: the message
// may have been taken, and the retry is the receiver's duplicate to suppress).
func TestDeliveryTimeoutsFire_SMTP14(t *testing.T) {
	t.Parallel()
	t.Run("command", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.d.CommandTimeout = time.Second
		wait, entered := stall(t)
		h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{
			MailReply: func(string, smtp.MailOptions) *smtp.SMTPError { wait(); return nil },
		})
		mx2 := h.mx("example.com", "mx2.example.com", 20, simnet.MXOptions{})
		r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
		if len(entered) == 0 {
			t.Fatal("mx1 never received MAIL")
		}
		if r.Outcome != queue.Delivered || r.RemoteMTA != "mx2.example.com" || len(mx2.Messages()) != 1 {
			t.Fatalf("result %+v, want delivered by mx2 after mx1 timed out on MAIL", r)
		}
	})
	t.Run("end_of_DATA", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.d.DataTimeout = time.Second
		wait, entered := stall(t)
		mx1 := h.mx("example.com", "mx1.example.com", 10, simnet.MXOptions{
			DataReply: func(simnet.Received) *smtp.SMTPError { wait(); return nil },
		})
		r := one(t, h.deliver("example.com", job("m1", "bob@example.com")))
		if len(entered) == 0 {
			t.Fatal("mx1 never received the end of DATA")
		}
		if r.Outcome != queue.Deferred || r.Enhanced != "4.4.2" || !strings.Contains(r.Text, "timeout") || len(mx1.Messages()) != 0 {
			t.Fatalf("result %+v, want deferred by the DATA timeout at mx1", r)
		}
	})
}
