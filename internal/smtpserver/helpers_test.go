package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/clocktest"
	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/testpki"
)

// fakeSubmitter records what it is given; fail, when set, makes Submit fail after reading the body.
type fakeSubmitter struct {
	mu   sync.Mutex
	msgs []submitted
	fail error
	n    int
}

type submitted struct {
	env  queue.Envelope
	body string
}

func (f *fakeSubmitter) Submit(_ context.Context, env queue.Envelope, body io.Reader) (string, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", fmt.Errorf("fake: read body: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.n++
	f.msgs = append(f.msgs, submitted{env: env, body: string(b)})
	return fmt.Sprintf("Q%d", f.n), nil
}

func (f *fakeSubmitter) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeSubmitter) got() []submitted {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]submitted(nil), f.msgs...)
}

type harness struct {
	logs  *logtest.Buffer
	srv   *Server
	addr  string
	sub   *fakeSubmitter
	ca    *testpki.CA
	clock *clocktest.Clock
	serve chan error
}

const testHost = "mx.test"

// newHarness starts a server on 127.0.0.1 that relays for loopback, with STARTTLS (test CA) and the user
// alice/secret; mod adjusts the config first.
func newHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	clock := clocktest.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	ca, err := testpki.NewCA("smtpserver test CA", clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(testpki.Leaf{DNSNames: []string{testHost}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Hostname:      testHost,
		RelayNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Users:         map[string]string{"alice": "secret"},
		TLS:           &tls.Config{Certificates: []tls.Certificate{cert}, Time: clock.Now},
		Now:           clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	sub := &fakeSubmitter{}
	logs := &logtest.Buffer{}
	srv, err := New(cfg, sub, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{logs: logs, srv: srv, addr: ln.Addr().String(), sub: sub, ca: ca, clock: clock, serve: make(chan error, 1)}
	go func() { h.serve <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-h.serve
	})
	return h
}

// client is a raw SMTP client over net/textproto, so tests can send exactly the bytes they mean.
type client struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
	ca   *testpki.CA
}

func (h *harness) dial(t *testing.T) *client {
	t.Helper()
	c := h.dialNoGreet(t)
	c.expect(220, "")
	return c
}

func (h *harness) dialNoGreet(t *testing.T) *client {
	t.Helper()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a broken test, never waited on
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, tp: textproto.NewConn(conn), ca: h.ca}
}

// read returns the next reply's code and text (lines joined with \n).
func (c *client) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		var te *textproto.Error
		if !errors.As(err, &te) {
			c.t.Fatalf("reading reply: %v", err)
		}
	}
	return code, msg
}

// expect reads a reply and fails unless its code is want and its text starts with prefix.
func (c *client) expect(want int, prefix string) string {
	c.t.Helper()
	code, msg := c.read()
	if code != want || !strings.HasPrefix(msg, prefix) {
		c.t.Fatalf("reply = %d %q, want %d %q...", code, msg, want, prefix)
	}
	return msg
}

// cmd sends one command line and expects a reply.
func (c *client) cmd(want int, prefix, format string, args ...any) string {
	c.t.Helper()
	if err := c.tp.PrintfLine(format, args...); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(want, prefix)
}

// raw writes bytes as they are.
func (c *client) raw(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) ehlo() string {
	c.t.Helper()
	return c.cmd(250, "", "EHLO client.test")
}

func (c *client) starttls() {
	c.t.Helper()
	c.cmd(220, "2.0.0", "STARTTLS")
	c.handshake()
}

// handshake runs the client side of TLS on the connection, after the server's 220 to STARTTLS.
func (c *client) handshake() {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{RootCAs: c.ca.Pool(), ServerName: testHost, Time: c.ca.Now})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.tp = textproto.NewConn(tc)
}

// send runs one transaction and returns the final reply's code and text.
func (c *client) send(from string, rcpts []string, data string) (int, string) {
	c.t.Helper()
	c.cmd(250, "", "MAIL FROM:<%s>", from)
	for _, r := range rcpts {
		c.cmd(250, "", "RCPT TO:<%s>", r)
	}
	c.cmd(354, "", "DATA")
	c.raw(data)
	return c.read()
}

// closed waits until the server closes the connection (EOF), bounded by the connection deadline.
func (c *client) closed() {
	c.t.Helper()
	if _, err := io.Copy(io.Discard, c.conn); err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("server did not close the connection")
		}
	}
}

const simpleMsg = "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n.\r\n"
