package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/sdnotify"
)

// TestServeNotifiesSystemd runs `mxgate serve` as systemd would start a Type=notify unit: it must send
// READY=1 on $NOTIFY_SOCKET once it accepts mail (the SMTP port answers), and STOPPING=1 on SIGTERM, then
// exit 0.
func TestServeNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	smtpAddr := freeAddr(t)
	cfgPath := filepath.Join(dir, "mxgate.toml")
	cfg := "[data]\ndir = \"data\"\n[smtp]\nlisten = \"" + smtpAddr + "\"\n[admin]\nlisten = \"" + freeAddr(t) + "\"\n[log]\nformat = \"text\"\nlevel = \"error\"\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := environment{getenv: func(k string) string {
		switch k {
		case sdnotify.Socket:
			return sock
		case ConfigEnv:
			return cfgPath
		}
		return ""
	}}
	var out, errb bytes.Buffer
	exited := make(chan int, 1)
	go func() { exited <- mainIO([]string{"serve"}, strings.NewReader(""), &out, &errb, env) }()

	read := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v (serve stderr: %s)", err, errb.String())
		}
		return string(buf[:n])
	}
	if got := read(); !strings.HasPrefix(got, "READY=1\nSTATUS=accepting mail on "+smtpAddr) {
		t.Fatalf("first notification = %q, want READY=1", got)
	}
	c, err := net.Dial("tcp", smtpAddr)
	if err != nil {
		t.Fatalf("READY=1 before the SMTP port answers: %v", err)
	}
	c.Close()
	if _, err := os.Stat(filepath.Join(dir, "data", "state.db")); err != nil {
		t.Errorf("data.dir was not resolved against the configuration's directory: %v", err)
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if got := read(); !strings.HasPrefix(got, "STOPPING=1") {
		t.Errorf("notification after SIGTERM = %q, want STOPPING=1", got)
	}
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("serve exited %d after SIGTERM; stderr: %s", code, errb.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
