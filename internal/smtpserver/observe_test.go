package smtpserver

import (
	"encoding/base64"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type observed struct {
	mu       sync.Mutex
	accepted []Accepted
	rejected map[Reason]int
}

func (o *observed) observer() Observer {
	return Observer{
		Accepted: func(a Accepted) { o.mu.Lock(); o.accepted = append(o.accepted, a); o.mu.Unlock() },
		Rejected: func(r Reason) {
			o.mu.Lock()
			if o.rejected == nil {
				o.rejected = map[Reason]int{}
			}
			o.rejected[r]++
			o.mu.Unlock()
		},
	}
}

// TestIntakeObserverReasons shows that each refusal is counted once under its reason, and each 250 as an
// accepted message with whether the client authenticated.
func TestIntakeObserverReasons(t *testing.T) {
	o := &observed{}
	h := newHarness(t, func(c *Config) {
		c.RelayNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		c.Observer = o.observer()
	})
	c := h.dial(t)
	c.ehlo()
	c.cmd(530, "5.7.10", "MAIL FROM:<a@example.org> REQUIRETLS")
	c.cmd(553, "5.1.7", "MAIL FROM:<a@@example.org>")
	c.cmd(250, "", "MAIL FROM:<a@example.org>")
	c.cmd(554, "5.7.1", "RCPT TO:<b@example.net>")
	c.cmd(554, "5.7.1", "RCPT TO:<c@example.net>")
	c.cmd(250, "", "RSET")
	c.starttls()
	c.ehlo()
	c.cmd(535, "5.7.8", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")))
	c.cmd(235, "2.7.0", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")))
	if code, msg := c.send("a@example.org", []string{"b@example.net"}, simpleMsg); code != 250 {
		t.Fatalf("DATA reply = %d %q", code, msg)
	}
	c.cmd(221, "", "QUIT")

	o.mu.Lock()
	defer o.mu.Unlock()
	want := map[Reason]int{ReasonRequireTLS: 1, ReasonBadAddress: 1, ReasonRelayDenied: 2, ReasonAuthFailed: 1}
	if diff := cmp.Diff(want, o.rejected); diff != "" {
		t.Errorf("rejections (-want +got):\n%s", diff)
	}
	if len(o.accepted) != 1 || !o.accepted[0].Authenticated || o.accepted[0].Commit < 0 {
		t.Errorf("accepted = %+v, want one authenticated message", o.accepted)
	}
}

func TestRejectReasonsAreKnown(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range Reasons {
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
	}
	for _, r := range []Reason{ReasonRelayDenied, ReasonAuthFailed, ReasonTooManyConns, ReasonStorage, ReasonOther} {
		if !seen[r] {
			t.Errorf("Reasons lacks %q", r)
		}
	}
}
