package smtpserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/queue"
)

var (
	errBareLF         = errors.New("bare LF")
	errBareCR         = errors.New("bare CR")
	errHeaderTooLarge = errors.New("header section too large")
)

// lineEndingReader passes message data through and fails at the first CR not followed by LF or LF not
// preceded by CR. It reads what go-smtp's DATA reader yields (dot-unstuffed, terminator removed) or the
// raw BDAT chunks.
//
// RFC 5321 Section 2.3.8: only CRLF ends a line. go-smtp v0.25.1 ends DATA only at <CRLF>.<CRLF>, but it
// passes bare LF and CR inside the data on to us, so the smuggling sequences (<LF>.<LF>, <LF>.<CRLF>,
// <CR>.<CR>, <CRLF>.<LF> ...) would otherwise be stored and could end the message early at a lenient next
// hop. All of them contain a bare CR or LF that survives go-smtp's reader and is refused here; the session
// stays in sync because go-smtp then discards input up to the real terminator.
//
// Spec: one sequence cannot be seen here: go-smtp's dot-unstuffing drops the CR of "<CRLF>.<CR>" followed by
// anything but LF, so "<CRLF>.<CR>X" arrives as "<CRLF>X". What we store is still CRLF-only, so it cannot
// end a message anywhere downstream; we accept that residue rather than re-implement the DATA reader.
type lineEndingReader struct {
	r   io.Reader
	cr  bool  // previous byte was CR
	off int64 // bytes passed so far
	err error // sticky: the first error from r or a line-ending violation
}

func (l *lineEndingReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for i := 0; i < n; i++ {
		c := p[i]
		switch {
		case l.cr && c != '\n':
			l.err = fmt.Errorf("%w at offset %d", errBareCR, l.off+int64(i)-1)
		case !l.cr && c == '\n':
			l.err = fmt.Errorf("%w at offset %d", errBareLF, l.off+int64(i))
		}
		if l.err != nil {
			l.off += int64(i)
			return i, l.err
		}
		l.cr = c == '\r'
	}
	l.off += int64(n)
	if err == io.EOF && l.cr {
		l.err = fmt.Errorf("%w at end of data", errBareCR)
		return n, l.err
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// message is the inspected header section and a reader for the rest.
type message struct {
	head        []byte // header section as received, including the empty line if there is one
	rest        io.Reader
	tlsRequired int    // number of TLS-Required fields
	tlsValue    string // value of the first, unfolded and trimmed
	received    int    // number of Received fields (hops so far)
}

// readHeader reads the header section (RFC 5322 Section 2.1) into memory, up to maxHeaderBytes, so that the
// envelope can carry TLS-Required before the body streams to the queue. The section ends at the empty line,
// at the end of data, or at the first line that is neither a field nor a continuation (which then belongs
// to the body, as lenient parsers treat it).
func readHeader(r io.Reader) (message, error) {
	br := bufio.NewReaderSize(r, 32<<10)
	var m message
	var head bytes.Buffer
	inTLSField := false
	var tlsVal strings.Builder
	var leftover []byte
	for {
		line, err := readLine(br, maxHeaderBytes-head.Len())
		if err != nil && err != io.EOF {
			return message{}, err
		}
		if len(line) == 0 {
			break
		}
		if bytes.Equal(line, []byte("\r\n")) {
			head.Write(line)
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inTLSField {
				tlsVal.Write(bytes.TrimRight(line, "\r\n"))
			}
			head.Write(line)
		} else if name, value, ok := splitField(line); ok {
			inTLSField = false
			if strings.EqualFold(name, "Received") {
				m.received++
			}
			if strings.EqualFold(name, "TLS-Required") {
				m.tlsRequired++
				if m.tlsRequired == 1 {
					inTLSField = true
					tlsVal.WriteString(value)
				}
			}
			head.Write(line)
		} else {
			leftover = line
			break
		}
		if err == io.EOF {
			break
		}
	}
	m.head = head.Bytes()
	m.tlsValue = strings.TrimSpace(tlsVal.String())
	m.rest = io.MultiReader(bytes.NewReader(leftover), br)
	return m, nil
}

// readLine reads one line including its line ending, failing with errHeaderTooLarge beyond max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > max {
			return nil, errHeaderTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, err
	}
}

// splitField splits "Name: value" (RFC 5322 Section 2.2; obsolete WSP before the colon tolerated).
func splitField(line []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", "", false
	}
	n := strings.TrimRight(string(line[:i]), " \t")
	if n == "" {
		return "", "", false
	}
	for j := 0; j < len(n); j++ {
		if n[j] < 33 || n[j] > 126 {
			return "", "", false
		}
	}
	return n, strings.TrimRight(string(line[i+1:]), "\r\n"), true
}

type countingReader struct {
	r   io.Reader
	n   int64
	now func() time.Time
	eof time.Time // when the end of the data was read: the client's final dot
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF && c.eof.IsZero() {
		c.eof = c.now()
	}
	return n, err
}

// received builds the trace field we prepend (RFC 5321 Section 4.4, SMTP-16). It names the client's HELO
// and IP, us, the protocol (RFC 3848 / RFC 6531 names), the TLS version and cipher, and the recipient only
// when there is exactly one: with several, listing them would tell each recipient about the others.
func (s *session) received(env queue.Envelope, authed bool) string {
	proto := "ESMTP"
	if env.SMTPUTF8 {
		proto = "UTF8SMTP"
	}
	if s.tls != nil {
		proto += "S"
	}
	if authed {
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (mxgate) with %s", cleanHelo(s.helo), s.ip, s.srv.cfg.Hostname, proto)
	if s.tls != nil {
		fmt.Fprintf(&b, "\r\n\t(version=%s cipher=%s)", tlsVersionName(s.tls.Version), tls.CipherSuiteName(s.tls.CipherSuite))
	}
	if len(env.Recipients) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", env.Recipients[0].Addr)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", s.srv.now().Format(time.RFC1123Z))
	return b.String()
}

func tlsVersionName(v uint16) string {
	return strings.ReplaceAll(tls.VersionName(v), " ", "")
}

// cleanHelo keeps the HELO argument from breaking the header: anything outside the characters of a domain
// or address literal becomes '_'.
func cleanHelo(h string) string {
	if h == "" {
		return "unknown"
	}
	if len(h) > 255 {
		h = h[:255]
	}
	b := []byte(h)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]_", c) >= 0
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}
