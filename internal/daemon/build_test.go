package daemon_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/daemon"
)

// componentGoroutines lists the running background loops of the components New opens (the queue's group
// committer, the TLS session recorder's flusher).
func componentGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"queue.(*Queue).committer", "tlsreport.(*Recorder).loop"} {
			if strings.Contains(g, fn) {
				out = append(out, fn)
			}
		}
	}
	return out
}

// When the last component fails to build, New releases everything it opened before (the queue, the
// recorder, the store): nothing keeps running, and the same data directory opens cleanly afterwards.
func TestNewReleasesComponentsOnLateFailure(t *testing.T) {
	n := newSimNet(t)
	if got := componentGoroutines(); len(got) != 0 {
		t.Fatalf("component loops running before the test: %v", got)
	}
	dir := filepath.Join(t.TempDir(), "data")
	cfg := n.GatewayConfig(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A console password file that cannot be read: the console, built last, fails.
	pw := filepath.Join(dir, "console-password")
	if err := os.Symlink(pw, pw); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard, Config: cfg, Roots: n.RootPool()})
	if err == nil {
		d.Close()
		t.Fatal("New succeeded with an unreadable console password file")
	}
	if !strings.Contains(err.Error(), "console") {
		t.Errorf("New: %v, want the console's error", err)
	}
	if got := componentGoroutines(); len(got) != 0 {
		t.Fatalf("after New failed, still running: %v", got)
	}
	if err := os.Remove(pw); err != nil {
		t.Fatal(err)
	}
	d, err = daemon.New(context.Background(), daemon.Options{BootstrapOut: io.Discard, Config: cfg, Roots: n.RootPool()})
	if err != nil {
		t.Fatalf("New on the same data directory after the failure: %v", err)
	}
	if got := componentGoroutines(); len(got) != 2 {
		t.Errorf("running after New: %v, want the committer and the recorder", got)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := componentGoroutines(); len(got) != 0 {
		t.Fatalf("after Close, still running: %v", got)
	}
}
