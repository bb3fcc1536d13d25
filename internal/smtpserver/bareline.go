package smtpserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors of commandGuard: a command line ended by LF alone, or holding a CR not followed by LF.
var (
	errBareLFCommand = errors.New("bare LF in a command")
	errBareCRCommand = errors.New("bare CR in a command")
)

// maxVerb bounds what commandGuard keeps of a command line: enough for "BDAT 4294967295 LAST".
const maxVerb = 64

// What commandGuard is reading.
const (
	guardCommand = iota // command lines
	guardData           // DATA content, up to <CRLF>.<CRLF>
	guardChunk          // a BDAT chunk of known size
	guardPass           // TLS after STARTTLS: nothing to see here
)

// commandGuard refuses a session whose client ends a command line with LF alone or puts a CR not followed by
// LF into one, as Postfix 3.9 does (smtpd_forbid_bare_newline): it replies 500 5.5.2 and closes. go-smtp's
// reader takes LF alone as a line ending and keeps a CR inside a line, and it offers no hook, so the guard
// reads the connection's bytes beneath it. It follows the protocol to know what is a command: message
// data after DATA (until <CRLF>.<CRLF>, and only while the reply to DATA is 354) and BDAT chunks are not
// commands; bare line endings there are refused with 554 5.6.0 by lineEndingReader instead, and the
// session goes on. The server's replies, seen on the way out, are matched to the commands in order.
//
// Spec: after STARTTLS the bytes on the socket are TLS records and go-smtp reads the commands from its own
// tls.Conn, which this guard cannot reach; inside TLS a bare line ending in a command is not refused. Message
// data is protected the same way with and without TLS.
//
// Commands already read before the offending line are answered first: the bytes up to that line go to
// go-smtp, and the refusal comes at its next read.
type commandGuard struct {
	mu      sync.Mutex
	mode    int
	cr      bool   // the previous command byte was CR
	line    []byte // the current command line, up to maxVerb bytes
	chunk   uint64 // bytes left in a BDAT chunk
	dot     int    // bytes of "\r\n.\r\n" matched in DATA content
	pending []string
	greeted bool
	out     []byte // the server's current reply line
	refused error  // the violation to refuse at the next read
	closed  bool
}

const endOfData = "\r\n.\r\n"

// Read passes the client's bytes on, up to the first command line with a bare LF or CR; the read after that
// refuses the session.
func (c *trackedConn) Read(p []byte) (int, error) {
	g := &c.guard
	g.mu.Lock()
	closed, refused := g.closed, g.refused
	g.mu.Unlock()
	switch {
	case closed:
		return 0, io.EOF
	case refused != nil:
		return 0, c.refuse(refused)
	}
	n, err := c.Conn.Read(p)
	g.mu.Lock()
	keep, verr := g.scan(p[:n])
	if verr != nil && keep > 0 {
		g.refused = verr
	}
	g.mu.Unlock()
	switch {
	case verr == nil:
		return n, err
	case keep > 0:
		return keep, nil
	}
	return 0, c.refuse(verr)
}

// refuse answers 500 5.5.2 and closes the connection. go-smtp then sees the end of input and ends the
// session without a reply of its own.
func (c *trackedConn) refuse(err error) error {
	c.guard.mu.Lock()
	c.guard.closed = true
	c.guard.mu.Unlock()
	c.srv.log.Warn("session refused: "+err.Error(), "ip", c.ip.String())
	// Deadlines are wall-clock by nature; this bounds a write to a client that does not read.
	c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c.Conn, "500 5.5.2 %s: lines must end with CRLF (refused to prevent SMTP smuggling)\r\n", err)
	c.Close()
	return io.EOF
}

// Write passes the server's replies on and notes which commands they answer.
func (c *trackedConn) Write(p []byte) (int, error) {
	c.guard.mu.Lock()
	c.guard.replies(p)
	c.guard.mu.Unlock()
	return c.Conn.Write(p)
}

// scan looks at bytes read from the client. On a violation it returns how many of them precede the
// offending command line (negative or zero: the line began in an earlier read).
func (g *commandGuard) scan(b []byte) (int, error) {
	lineStart := -len(g.line)
	if g.cr {
		lineStart--
	}
	for i := 0; i < len(b); i++ {
		switch g.mode {
		case guardPass:
			return len(b), nil
		case guardChunk:
			skip := min(uint64(len(b)-i), g.chunk)
			g.chunk -= skip
			i += int(skip) - 1
			if g.chunk == 0 {
				g.mode, lineStart = guardCommand, i+1
			}
		case guardData:
			if g.dot == 0 {
				// Most of a message: skip to the next CR, where the end of data could begin.
				j := bytes.IndexByte(b[i:], '\r')
				if j < 0 {
					return len(b), nil
				}
				i += j
			}
			ch := b[i]
			switch {
			case ch == endOfData[g.dot]:
				g.dot++
			case ch == '\r':
				g.dot = 1
			default:
				g.dot = 0
			}
			if g.dot == len(endOfData) {
				g.mode, lineStart = guardCommand, i+1
			}
		default:
			ch := b[i]
			switch {
			case g.cr && ch != '\n':
				return lineStart, errBareCRCommand
			case !g.cr && ch == '\n':
				return lineStart, errBareLFCommand
			case ch == '\n':
				g.command()
				lineStart = i + 1
			case ch != '\r' && len(g.line) < maxVerb:
				g.line = append(g.line, ch)
			}
			g.cr = ch == '\r'
		}
	}
	return len(b), nil
}

// command notes a complete command line: what it expects in reply, and what follows it on the wire.
func (g *commandGuard) command() {
	f := strings.Fields(string(g.line))
	g.line, g.cr = g.line[:0], false
	verb := ""
	if len(f) > 0 {
		verb = strings.ToUpper(f[0])
	}
	g.pending = append(g.pending, verb)
	switch {
	case verb == "DATA" && len(f) == 1:
		// Data follows once the reply is 354; a client that does not wait is read as sending data.
		g.mode, g.dot = guardData, 2
	case verb == "BDAT" && (len(f) == 2 || len(f) == 3 && strings.EqualFold(f[2], "LAST")):
		// As go-smtp does: a chunk follows every BDAT whose arguments parse, accepted or not.
		if n, err := strconv.ParseUint(f[1], 10, 32); err == nil && n > 0 {
			g.mode, g.chunk = guardChunk, n
		}
	}
}

// replies matches the server's final reply lines to the pending commands.
func (g *commandGuard) replies(b []byte) {
	if g.mode == guardPass {
		return
	}
	for _, ch := range b {
		if ch != '\n' {
			if len(g.out) < 8 {
				g.out = append(g.out, ch)
			}
			continue
		}
		line := g.out
		g.out = g.out[:0]
		if len(line) < 3 || len(line) > 3 && line[3] == '-' {
			continue // a continuation line, or not a reply
		}
		code, err := strconv.Atoi(string(line[:3]))
		if err != nil {
			continue
		}
		if !g.greeted {
			g.greeted = true
			continue
		}
		if len(g.pending) == 0 {
			continue
		}
		verb := g.pending[0]
		g.pending = g.pending[1:]
		switch verb {
		case "DATA":
			if code == 354 {
				// The reply at the end of the data answers DATA too.
				g.pending = append([]string{"DATA END"}, g.pending...)
			} else if g.mode == guardData {
				g.mode, g.dot = guardCommand, 0
			}
		case "STARTTLS":
			if code == 220 {
				g.mode = guardPass
			}
		}
	}
}
