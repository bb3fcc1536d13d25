package queue

import "testing"

// RFC 3464 Section 3 (SMTP-23): each recipient gets at most one "failed" DSN, however often the queue runs
// afterwards.
func TestOneDSNPerRecipient_SMTP23(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.script = failWith(550, "5.1.1", "no such user")
	e.submit(t, "alice@sender.test", "bob@example.com", "carol@example.com")
	e.runOnce(t)
	for range 3 {
		e.runOnce(t)
	}
	dsns := e.fake.dsns()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1 covering both recipients", len(dsns))
	}
}
