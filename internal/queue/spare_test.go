package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Finished bodies become empty spare files, new messages reuse them, and a restart keeps them spare.
func TestSpareFilesAreEmptyAndReused(t *testing.T) {
	e := newEnv(t, nil)
	for i := 0; i < 3; i++ {
		e.submit(t, "alice@sender.test", "bob@example.com")
	}
	e.runOnce(t)
	spares := func() []string {
		ents, err := os.ReadDir(e.opts.Dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, en := range ents {
			if strings.HasPrefix(en.Name(), sparePrefix) {
				fi, _ := en.Info()
				if fi.Size() != 0 {
					t.Errorf("spare %s holds %d bytes", en.Name(), fi.Size())
				}
				out = append(out, en.Name())
			}
		}
		return out
	}
	if got := spares(); len(got) != 3 {
		t.Fatalf("spares after 3 deliveries = %v, want 3", got)
	}
	id := e.submit(t, "dave@sender.test", "carol@example.com")
	if got := spares(); len(got) != 2 {
		t.Fatalf("spares after one more submission = %v, want 2 (one reused)", got)
	}
	body, err := os.ReadFile(filepath.Join(e.opts.Dir, id))
	if err != nil || !strings.HasPrefix(string(body), "From: dave@sender.test\r\n") {
		t.Fatalf("reused file for %s holds %q (%v)", id, body, err)
	}
	// A restart keeps the spares spare: they are neither quarantined nor taken for messages.
	e.q.Close()
	e.open(t)
	if got := spares(); len(got) != 2 {
		t.Errorf("spares after reopen = %v, want 2", got)
	}
	if q := e.q.Quarantined(); q != 0 {
		t.Errorf("%d spool entries quarantined after reopen, want 0", q)
	}
	if _, err := e.q.Get(context.Background(), id); err != nil {
		t.Errorf("the queued message did not survive the reopen: %v", err)
	}
}
