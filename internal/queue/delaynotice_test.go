package queue

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
)

var actionRE = regexp.MustCompile(`(?m)^Final-Recipient: rfc822; ?(\S+)\r\nAction: (\w+)`)

// delayNotices returns, for each delay DSN delivered, to whom it went and the recipients it says are delayed.
func delayNotices(e *env) (to []string, delayed [][]string) {
	for _, d := range e.fake.dsns() {
		if !strings.Contains(d.Body, "Action: delayed") {
			continue
		}
		to = append(to, d.Job.Recipients[0].Addr.String())
		var rs []string
		for _, m := range actionRE.FindAllStringSubmatch(d.Body, -1) {
			if m[2] == "delayed" {
				rs = append(rs, m[1])
			}
		}
		slices.Sort(rs)
		delayed = append(delayed, rs)
	}
	return to, delayed
}

// TestDelayNoticeOncePerRecipient_DSN: after DelayWarning, a deferral sends one "Action: delayed" notice
// covering the recipients that asked for it (NOTIFY with DELAY, or no NOTIFY by default), never twice, never
// for NOTIFY without DELAY or NEVER, never about a TLS report, a DSN or a message with a null sender.
func TestDelayNoticeOncePerRecipient_DSN(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.DelayWarning = 4 * time.Hour
		o.DelayWarningDefault = true
		o.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, Factor: 1}
	})
	e.fake.script = func(j Job, r Recipient) Result {
		return Result{Outcome: Deferred, Code: 451, Enhanced: "4.4.1", Text: "connection timed out", RemoteMTA: "mx.slow.example"}
	}
	e.submitEnv(t, Envelope{From: address.MustParsePath("alice@corp.example"), Recipients: []Recipient{
		{Addr: address.MustParseAddress("a@slow.example")},
		{Addr: address.MustParseAddress("b@slow.example"), Notify: []string{"DELAY", "FAILURE"}},
		{Addr: address.MustParseAddress("c@slow.example"), Notify: []string{"FAILURE"}},
		{Addr: address.MustParseAddress("d@slow.example"), Notify: []string{"NEVER"}},
	}})
	e.submitEnv(t, Envelope{From: address.MustParsePath("tlsrpt@corp.example"), Report: true, Recipients: []Recipient{{Addr: address.MustParseAddress("tlsrpt@slow.example")}}})
	e.submitEnv(t, Envelope{From: address.NullPath, Recipients: []Recipient{{Addr: address.MustParseAddress("bounce@slow.example")}}})

	e.runOnce(t)
	if to, _ := delayNotices(e); len(to) != 0 {
		t.Fatalf("delay notices before DelayWarning: %v", to)
	}
	for range 3 {
		e.clock.Advance(3 * time.Hour)
		e.runOnce(t)
		e.runOnce(t) // delivers the notice, if any
	}
	to, delayed := delayNotices(e)
	if len(to) != 1 || to[0] != "alice@corp.example" {
		t.Fatalf("delay notices went to %v, want one to alice@corp.example", to)
	}
	if want := []string{"a@slow.example", "b@slow.example"}; !slices.Equal(delayed[0], want) {
		t.Errorf("delayed recipients = %v, want %v", delayed[0], want)
	}
	for _, d := range e.fake.dsns() {
		if !strings.Contains(d.Body, "Action: delayed") {
			continue
		}
		for _, want := range []string{"Subject: Delayed Mail (still being retried)", "Status: 4.4.1", "Will-Retry-Until: ", "Remote-MTA: dns; mx.slow.example"} {
			if !strings.Contains(d.Body, want) {
				t.Errorf("delay notice lacks %q:\n%s", want, d.Body)
			}
		}
	}
}

// TestDelayNoticeDefaultOff: without NOTIFY and with DelayWarningDefault off, no notice; DelayWarning 0
// turns notices off even for NOTIFY=DELAY.
func TestDelayNoticeDefaultOff(t *testing.T) {
	for _, tt := range []struct {
		name  string
		after time.Duration
		dflt  bool
		want  int
	}{
		{"default off", 4 * time.Hour, false, 1}, // only the NOTIFY=DELAY recipient's
		{"notices off", 0, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.DelayWarning, o.DelayWarningDefault = tt.after, tt.dflt
				o.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, Factor: 1}
			})
			e.fake.script = func(j Job, r Recipient) Result { return Result{Outcome: Deferred, Code: 451, Enhanced: "4.4.1"} }
			e.submitEnv(t, Envelope{From: address.MustParsePath("alice@corp.example"), Recipients: []Recipient{{Addr: address.MustParseAddress("a@slow.example")}}})
			e.submitEnv(t, Envelope{From: address.MustParsePath("alice@corp.example"), Recipients: []Recipient{{Addr: address.MustParseAddress("b@slow.example"), Notify: []string{"DELAY"}}}})
			e.runOnce(t)
			e.clock.Advance(5 * time.Hour)
			e.runOnce(t)
			e.runOnce(t)
			if to, delayed := delayNotices(e); len(to) != tt.want || tt.want == 1 && delayed[0][0] != "b@slow.example" {
				t.Errorf("notices to %v for %v, want %d (for b@slow.example)", to, delayed, tt.want)
			}
		})
	}
}
