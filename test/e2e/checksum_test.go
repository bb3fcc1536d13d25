package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/simnet"
)

// A spool body altered on disk after it was accepted (same size, one word changed) is never completed as
// DATA: the gateway aborts before the final dot, the receiver accepts nothing, and the message is
// quarantined with its body.
func TestCorruptSpoolBodyNeverDelivered(t *testing.T) {
	n, err := simnet.New(simnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	mx, err := n.AddMX(simnet.MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10})
	if err != nil {
		t.Fatal(err)
	}
	mx.Stop() // the message waits in the queue
	dir := filepath.Join(t.TempDir(), "data")
	cfg := writeConfig(t, n, dir, "")
	g := start(t, cfg)
	if err := send(g.SMTP, "bob@example.com", "t5-1"); err != nil {
		t.Fatal(err)
	}
	g.WaitLog(regexp.MustCompile(`"msg":"delivery".*"outcome":"deferred"`), 30*time.Second)
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}

	spool := filepath.Join(dir, "spool")
	ents, err := os.ReadDir(spool)
	if err != nil {
		t.Fatal(err)
	}
	var body string
	for _, e := range ents {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), "spare.") && !strings.HasSuffix(e.Name(), ".journal") {
			body = filepath.Join(spool, e.Name())
		}
	}
	data, err := os.ReadFile(body)
	if err != nil {
		t.Fatalf("spool body: %v", err)
	}
	altered := bytes.Replace(data, []byte("token t5-1"), []byte("token t5-2"), 1)
	if bytes.Equal(altered, data) || len(altered) != len(data) {
		t.Fatal("could not alter the body in place")
	}
	if err := os.WriteFile(body, altered, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := mx.Start(); err != nil {
		t.Fatal(err)
	}
	g = start(t, cfg)
	g.WaitLog(regexp.MustCompile(`"msg":"queue: message quarantined".*checksum`), 60*time.Second)
	if got := len(mx.Messages()); got != 0 {
		t.Errorf("the receiver accepted %d messages from a corrupt body", got)
	}
	if _, err := os.Stat(filepath.Join(spool, "quarantine", filepath.Base(body))); err != nil {
		t.Errorf("the corrupt body is not in the quarantine directory: %v", err)
	}
	if err := g.Stop(); err != nil {
		t.Error(err)
	}
}
