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

// lineSlack is what commandGuard keeps of a command line beyond the server's MaxLineLength: go-smtp ends the
// session at a longer line, so a line the guard had to cut short is never parsed by go-smtp.
const lineSlack = 16

// What commandGuard is reading.
const (
	guardCommand = iota // command lines
	guardData           // DATA content, up to the end marker as go-smtp's data reader finds it
	guardChunk          // a BDAT chunk of known size
	guardPass           // TLS after STARTTLS: nothing to see here
)

// States of DATA content, those of go-smtp v0.25.1's dataReader: the guard must find the end of the data
// exactly where go-smtp does (a bare CR before ".\r\n", for one, does not end it).
const (
	dataBeginLine = iota
	dataDot
	dataDotCR
	dataCR
	dataText
)

// commandGuard refuses a session whose client ends a command line with LF alone or puts a CR not followed by
// LF into one, as Postfix 3.9 does (smtpd_forbid_bare_newline): it replies 500 5.5.2 and closes. go-smtp's
// reader takes LF alone as a line ending and keeps a CR inside a line, and it offers no hook, so the guard
// reads the connection's bytes beneath it. It must see the protocol exactly as go-smtp does to know what is
// a command: message data after a DATA answered 354 (up to the end marker, found with go-smtp's own state
// machine) and BDAT chunks are not commands; bare line endings there are refused with 554 5.6.0 by
// lineEndingReader instead, and the session goes on. The server's replies, seen on the way out, are matched
// to the commands in order.
//
// Whether DATA is accepted, whether a line is an AUTH response, and whether STARTTLS succeeds are known only
// from the server's reply. So the guard hands go-smtp one command line per read and holds back what the
// client pipelined after it: go-smtp answers a command before it reads again, and the reply is seen before
// the held bytes are judged. A BDAT chunk follows its command whatever the reply, so BDAT is decided from
// the full line, parsed as go-smtp v0.25.1's parseCmd and handleBdat do.
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
	maxLine int    // the server's MaxLineLength
	cr      bool   // the previous command byte was CR
	line    []byte // the current command line, up to maxLine+lineSlack bytes
	long    bool   // the current command line was longer than that
	auth    bool   // the next line is an AUTH response (the last reply was 334), not a command
	chunk   uint64 // bytes left in a BDAT chunk
	data    int    // DATA content state (dataBeginLine...)
	held    []byte // bytes read from the client and not yet handed to go-smtp
	heldErr error  // the read error that came with held bytes, returned once they are gone
	pending []string
	greeted bool
	out     []byte // the server's current reply line
	refused error  // the violation to refuse at the next read
	closed  bool
}

// Read passes the client's bytes on, one command line at a time, up to the first command line with a bare
// LF or CR; the read after that refuses the session.
func (c *trackedConn) Read(p []byte) (int, error) {
	g := &c.guard
	g.mu.Lock()
	closed, refused := g.closed, g.refused
	var err error
	if len(g.held) == 0 && g.heldErr != nil {
		err, g.heldErr = g.heldErr, nil
	}
	fromHeld := len(g.held) > 0
	g.mu.Unlock()
	switch {
	case closed:
		return 0, io.EOF
	case refused != nil:
		return 0, c.refuse(refused)
	case err != nil:
		return 0, err
	}
	n := 0
	if !fromHeld {
		n, err = c.Conn.Read(p)
	}
	g.mu.Lock()
	src := p[:n]
	if fromHeld {
		src = g.held[:min(len(g.held), len(p))]
	}
	keep, verr := g.scan(src)
	switch {
	case verr != nil && keep <= 0:
		g.mu.Unlock()
		return 0, c.refuse(verr)
	case verr != nil:
		// The lines before the offending one are answered first.
		g.refused, err = verr, nil
	}
	if fromHeld {
		copy(p, src[:keep])
		if g.held = g.held[keep:]; len(g.held) == 0 {
			g.held = nil
		}
	} else if verr == nil && keep < len(src) {
		// Hold back what follows a command line until go-smtp has answered it.
		g.held = append([]byte(nil), src[keep:]...)
		g.heldErr, err = err, nil
	}
	g.mu.Unlock()
	return keep, err
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

// scan looks at bytes read from the client. It returns how many of them go to go-smtp now: all of them, or
// those up to the end of a command line (the rest is held back). On a violation it returns how many of
// them precede the offending command line (negative or zero: the line began in an earlier read).
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
			if g.data == dataText {
				// Most of a message: only a CR changes the state.
				j := bytes.IndexByte(b[i:], '\r')
				if j < 0 {
					return len(b), nil
				}
				i += j
			}
			if g.dataByte(b[i]) {
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
				// One command line per read: what follows is judged after go-smtp has answered.
				return i + 1, nil
			case ch == '\r':
			case len(g.line) < g.maxLine+lineSlack:
				g.line = append(g.line, ch)
			default:
				g.long = true
			}
			g.cr = ch == '\r'
		}
	}
	return len(b), nil
}

// dataByte steps DATA content through go-smtp v0.25.1's dataReader states and reports the end of the data.
func (g *commandGuard) dataByte(c byte) (end bool) {
	switch g.data {
	case dataBeginLine:
		switch c {
		case '.':
			g.data = dataDot
		case '\r':
			g.data = dataCR
		default:
			g.data = dataText
		}
	case dataDot:
		if c == '\r' {
			g.data = dataDotCR
		} else {
			g.data = dataText
		}
	case dataDotCR:
		if c == '\n' {
			return true
		}
		g.data = dataText
	case dataCR:
		if c == '\n' {
			g.data = dataBeginLine
		} else {
			g.data = dataText
		}
	case dataText:
		if c == '\r' {
			g.data = dataCR
		}
	}
	return false
}

// parseCommand splits a command line as go-smtp v0.25.1's parseCmd does, which is what decides what the
// server does with it: any line starting with STARTTLS (in any case) is STARTTLS; otherwise a verb is
// exactly four bytes, alone or followed by a space.
func parseCommand(line string) (verb, arg string) {
	switch l := len(line); {
	case strings.HasPrefix(strings.ToUpper(line), "STARTTLS"):
		return "STARTTLS", ""
	case l < 4 || l == 5:
		return "", ""
	case l == 4:
		return strings.ToUpper(line), ""
	case line[4] != ' ':
		return "", ""
	}
	return strings.ToUpper(line[0:4]), strings.TrimSpace(line[5:])
}

// command notes a complete command line: what it expects in reply, and what follows it on the wire.
func (g *commandGuard) command() {
	line, long, auth := string(g.line), g.long, g.auth
	g.line, g.cr, g.long, g.auth = g.line[:0], false, false, false
	if auth {
		// An AUTH response (RFC 4954 Section 4): go-smtp reads it as such, not as a command.
		g.pending = append(g.pending, "AUTH")
		return
	}
	verb, arg := parseCommand(line)
	if long {
		// go-smtp refuses the line as too long and ends the session.
		verb = ""
	}
	g.pending = append(g.pending, verb)
	if verb != "BDAT" {
		return
	}
	// As go-smtp's handleBdat: a chunk follows every BDAT whose arguments parse, accepted or not.
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		return
	}
	if n, err := strconv.ParseUint(f[0], 10, 32); err == nil && n > 0 {
		g.mode, g.chunk = guardChunk, n
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
				// The data follows; the reply at its end answers DATA too.
				g.mode, g.data = guardData, dataBeginLine
				g.pending = append([]string{"DATA END"}, g.pending...)
			}
		case "AUTH":
			// A challenge: the next line is the client's response (RFC 4954 Section 4).
			g.auth = code == 334
		case "STARTTLS":
			if code == 220 {
				g.mode = guardPass
			}
		}
	}
}
