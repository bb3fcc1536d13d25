package queue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/address"
)

// FuzzAcceptedAddressLeavesQueue: every sender and recipient that Submit accepts can be delivered,
// deferred, expired and bounced. Each ends with no recipient left queued, and each failure (an expiry, a
// permanent reply, an administrator's bounce) records its outcome and queues the DSN the sender is owed,
// however unusual the addresses: building a DSN never blocks recording.
func FuzzAcceptedAddressLeavesQueue(f *testing.F) {
	for _, s := range [][3]string{
		{"alice@sender.test", "bob@example.com", "rfc822;bob@example.com"},
		{`"a<b>c"@sender.test`, `"x>y<z"@example.com`, ""},
		{`"a b"@sender.test`, `"bob smith"@example.com`, "rfc822;\"bob smith\"@example.com"},
		{"j\u00f6rg@sender.test", "\u00e9l\u00e8ve@\u00e9cole.example", "utf-8;\u00e9l\u00e8ve@\u00e9cole.example"},
		{"alice@sender.test", "tlsrpt%zz%@example.com", "rfc822;bob\r\nAction: delivered"},
		{"alice@[192.0.2.1]", "bob@[IPv6:2001:db8::1]", "x;\xff"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	// One queue for every input (opening one costs more than the rest of an iteration); each input has
	// its own messages.
	e := newEnv(f, func(o *Options) { o.MaxLifetime = time.Hour })
	var mu sync.Mutex
	outcome := map[string]Outcome{}
	e.fake.script = func(j Job, r Recipient) Result {
		mu.Lock()
		o := outcome[j.MsgID]
		mu.Unlock()
		res := Result{Outcome: o, Code: 250, RemoteMTA: "mx1 .example.com"}
		switch res.Outcome {
		case Deferred:
			res.Code, res.Enhanced, res.Text = 451, "4.4.1", "try later"
		case Failed:
			res.Code, res.Enhanced, res.Text = 550, "5.1.1", "no such user \xff"
		}
		return res
	}
	f.Fuzz(func(t *testing.T, from, rcpt, orcpt string) {
		ctx := context.Background()
		dsnsBefore := len(e.fake.dsns())
		// The SMTP server parses the envelope: what it refuses never reaches Submit.
		fromPath, err := address.ParsePath(from)
		if err != nil {
			return
		}
		to, err := address.ParseAddress(rcpt)
		if err != nil {
			return
		}
		env := Envelope{From: fromPath, Recipients: []Recipient{{Addr: to, ORcpt: orcpt}}}
		var ids []string
		for _, o := range []Outcome{Delivered, Deferred, Failed, ""} {
			id, err := e.q.Submit(ctx, env, strings.NewReader("Subject: fuzz\r\n\r\nbody\r\n"))
			if errors.Is(err, ErrInvalid) {
				return // refused at intake
			}
			if err != nil {
				t.Fatal(err)
			}
			if o == "" {
				// Administrator's bounce while queued.
				if err := e.q.Hold(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			outcome[id] = o
			mu.Unlock()
			ids = append(ids, id)
		}
		e.runOnce(t)
		if err := e.q.Bounce(ctx, ids[3]); err != nil {
			t.Fatalf("bounce: %v", err)
		}
		e.clock.Advance(2 * time.Hour) // past expiry: the deferred message's final attempt fails it
		e.runOnce(t)
		for _, id := range ids {
			if n := e.count(t, `SELECT COUNT(*) FROM queue_recipients WHERE msg_id = ? AND state = 'queued'`, id); n != 0 {
				t.Errorf("message %s still has %d queued recipients", id, n)
			}
		}
		if e.q.Quarantined() != 0 {
			t.Errorf("%d messages quarantined", e.q.Quarantined())
		}
		want := 3 // expired, failed, bounced
		if fromPath.IsNull() {
			want = 0 // "" and "<>" are the null reverse path: nothing is owed to it
		}
		if got := len(e.fake.dsns()) - dsnsBefore; got != want {
			t.Errorf("%d DSNs delivered, want %d (fallbacks %d)", got, want, e.q.DSNFallbacks())
		}
	})
}
