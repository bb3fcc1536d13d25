package queue

import (
	"context"
	"strings"
	"testing"
)

// TestStoredAddressThatNoLongerParsesFails: a recipient whose stored address no longer parses (an edited
// database, a parser grown stricter since it was accepted) is not handed to delivery as an untyped string,
// nor retried until the message expires: it fails at once with the reason, and the sender gets the DSN.
// The other recipient of the message is delivered as usual.
func TestStoredAddressThatNoLongerParsesFails(t *testing.T) {
	e := newEnv(t, nil)
	id := e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com")
	if _, err := e.opts.DB.ExecContext(context.Background(),
		`UPDATE queue_recipients SET rcpt = ? WHERE msg_id = ? AND rcpt = ?`, "carol\r\nRCPT TO:<x@y>@example.com", id, "carol@example.com"); err != nil {
		t.Fatal(err)
	}
	e.runOnce(t)
	e.runOnce(t) // the DSN

	var delivered []string
	for _, d := range e.fake.Deliveries() {
		if d.Job.MsgID == id {
			for _, r := range d.Job.Recipients {
				delivered = append(delivered, r.Addr.String())
			}
		}
	}
	if len(delivered) != 1 || delivered[0] != "bob@example.com" {
		t.Errorf("delivery was given %q, want only bob@example.com", delivered)
	}
	got, err := e.q.Trace(context.Background(), TraceQuery{ID: id})
	if err != nil || len(got) != 1 {
		t.Fatalf("Trace: %d messages, %v; want the finished message", len(got), err)
	}
	states := map[string]string{}
	for _, r := range got[0].Recipients {
		states[r.Addr] = r.State
		if strings.HasPrefix(r.Addr, "carol") && (r.LastEnhanced != "5.1.3" || !strings.Contains(r.LastText, "stored recipient address does not parse")) {
			t.Errorf("carol: %s %q; want 5.1.3 naming the parse failure", r.LastEnhanced, r.LastText)
		}
	}
	if states["bob@example.com"] != stateDelivered || states["carol\r\nRCPT TO:<x@y>@example.com"] != stateFailed {
		t.Errorf("recipient states %q, want bob delivered and carol failed", states)
	}
	dsns := e.fake.dsns()
	if len(dsns) != 1 || dsns[0].Job.Recipients[0].Addr.String() != "alice@sender.test" || !strings.Contains(dsns[0].Body, "5.1.3") {
		t.Errorf("DSNs %+v, want one to alice@sender.test with 5.1.3", dsns)
	}
}
