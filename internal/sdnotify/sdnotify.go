// Package sdnotify implements the sending side of systemd's service notification protocol (sd_notify(3)):
// one datagram of newline-separated KEY=VALUE assignments ("READY=1", "STOPPING=1", "STATUS=...") to the
// Unix datagram socket named by $NOTIFY_SOCKET. It is the few lines of the protocol mxgate needs, written
// here rather than pulled in with libsystemd or a Go binding: no file descriptor passing, no watchdog, no
// barrier.
package sdnotify

import (
	"fmt"
	"net"
	"strings"
)

// Socket is the environment variable systemd sets for a Type=notify service.
const Socket = "NOTIFY_SOCKET"

// Notifier sends notifications to one socket. The zero Notifier (no socket: not started by systemd, or
// NotifyAccess=none) sends nothing and reports no error.
type Notifier struct {
	// Addr is the value of $NOTIFY_SOCKET: a path, or "@name" for an abstract socket.
	Addr string
}

// Notify sends the assignments in one datagram, for example Notify("READY=1", "STATUS=accepting mail").
func (n Notifier) Notify(assignments ...string) error {
	if n.Addr == "" {
		return nil
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.Contains(a, "\n") {
			return fmt.Errorf("sdnotify: %q is not one KEY=VALUE assignment", a)
		}
	}
	name := n.Addr
	if name[0] == '@' {
		// sd_notify(3): a leading "@" names a socket in the abstract namespace.
		name = "\x00" + name[1:]
	} else if name[0] != '/' {
		return fmt.Errorf("sdnotify: $%s=%q is neither an absolute path nor an abstract socket", Socket, n.Addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
