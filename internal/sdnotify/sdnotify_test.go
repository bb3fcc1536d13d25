package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathAndAbstractSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn := listen(t, path)
	if err := (Notifier{Addr: path}).Notify("READY=1", "STATUS=accepting mail"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, conn); got != "READY=1\nSTATUS=accepting mail" {
		t.Errorf("datagram = %q", got)
	}

	abstract := "mxgate-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-") + time.Now().Format("150405.000000000")
	aconn := listen(t, "\x00"+abstract)
	if err := (Notifier{Addr: "@" + abstract}).Notify("STOPPING=1"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, aconn); got != "STOPPING=1" {
		t.Errorf("abstract datagram = %q", got)
	}
}

func TestNotifyErrors(t *testing.T) {
	if err := (Notifier{}).Notify("READY=1"); err != nil {
		t.Errorf("no socket: %v, want nil", err)
	}
	for _, tt := range []struct {
		n    Notifier
		a    string
		want string
	}{
		{Notifier{Addr: "relative/sock"}, "READY=1", "neither an absolute path"},
		{Notifier{Addr: filepath.Join(t.TempDir(), "none")}, "READY=1", "sdnotify:"},
		{Notifier{Addr: "/x"}, "READY", "not one KEY=VALUE"},
		{Notifier{Addr: "/x"}, "STATUS=a\nREADY=1", "not one KEY=VALUE"},
	} {
		if err := tt.n.Notify(tt.a); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v %q: err %v, want %q", tt.n, tt.a, err, tt.want)
		}
	}
}
