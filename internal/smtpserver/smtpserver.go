// Package smtpserver implements mxgate's inbound SMTP listener (RFC 5321) on emersion/go-smtp: it accepts
// mail from internal hosts and hands each message to the queue through a Submitter.
//
// It relays only: there are no local mailboxes. A client may relay when its address is in
// Config.RelayNetworks or after AUTH PLAIN/LOGIN (RFC 4954, RFC 4616), which is refused before STARTTLS
// (RFC 3207). It advertises PIPELINING, 8BITMIME, SMTPUTF8 (RFC 6531), SIZE (RFC 1870), ENHANCEDSTATUSCODES
// (RFC 2034), DSN (RFC 3461), REQUIRETLS (RFC 8689, only after STARTTLS) and, because go-smtp always does,
// CHUNKING (RFC 3030). Message data with a bare CR or bare LF is refused with 554 5.6.0, whichever way it
// arrives, so that nothing can be smuggled through mxgate to a lenient next hop (see lineEndingReader). A
// command line ended by a bare LF or holding a bare CR refuses the whole session with 500 5.5.2 (RFC 5321
// Section 2.3.8; see commandGuard), except inside STARTTLS, where go-smtp's reader cannot be reached.
// RFC 8689: MAIL ... REQUIRETLS sets Envelope.RequireTLS and is refused with 530 5.7.10 outside TLS; a single
// "TLS-Required: No" header sets Envelope.TLSOptional unless REQUIRETLS was given; a message with more than
// one TLS-Required field is refused with 554 5.6.0 (REQ-13: we treat it as malformed). Each accepted message
// gets a Received field prepended (RFC 5321 Section 4.4); nothing else in the message is changed. A message
// that already has more than 100 Received fields is looping and is refused with 554 5.4.6 (RFC 5321 Section
// 6.3).
//
// It deliberately does not: deliver locally, verify senders against the authenticated identity, accept
// address literals as recipients, or accept BINARYMIME.
package smtpserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/queue"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxMessageBytes = 50 << 20
	DefaultMaxRecipients   = 1000
	DefaultMaxLineLength   = 2000
	DefaultReadTimeout     = 5 * time.Minute
	DefaultWriteTimeout    = 5 * time.Minute
	DefaultMaxConnsPerIP   = 20
)

// maxHeaderBytes bounds the header section kept in memory while it is inspected (TLS-Required, RFC 8689).
// The body after it is streamed.
const maxHeaderBytes = 1 << 20

// maxHops is the number of Received fields beyond which a message is taken to be looping (RFC 5321
// Section 6.3: the threshold should be at least 100).
const maxHops = 100

// maxAuthFailures is the number of failed AUTH attempts one IP may make per authFailureWindow.
const (
	maxAuthFailures   = 10
	authFailureWindow = time.Minute
)

// Submitter takes a message into the queue. It must read body to EOF and return only once the message is
// durable; if reading body fails it must store nothing and return an error.
type Submitter interface {
	Submit(ctx context.Context, env queue.Envelope, body io.Reader) (string, error)
}

// Config configures a Server. Zero values get the defaults named on each field.
type Config struct {
	// Hostname is our name in the greeting and the Received header. Required.
	Hostname string
	// RelayNetworks are the client networks that may relay without AUTH. Empty means nobody: the caller
	// applies the documented default (127.0.0.0/8 and ::1/128).
	RelayNetworks []netip.Prefix
	// Users maps user name to password for AUTH PLAIN and LOGIN. Empty: AUTH is not offered.
	Users map[string]string
	// TLS, when set, enables STARTTLS (and with it AUTH and REQUIRETLS).
	TLS *tls.Config
	// MaxMessageBytes is the SIZE limit (default 50 MiB). Larger messages get 552 5.3.4, never truncation.
	MaxMessageBytes int64
	// MaxRecipients per transaction (default 1000); beyond it 452 4.5.3.
	MaxRecipients int
	// MaxLineLength for commands and DATA lines (default 2000).
	MaxLineLength int
	// ReadTimeout and WriteTimeout per command and reply (default 5m each).
	ReadTimeout, WriteTimeout time.Duration
	// MaxConnsPerIP limits concurrent connections from one client address (default 20).
	MaxConnsPerIP int
	// RatePerIP limits transactions (MAIL commands) per minute from one client address; 0 = unlimited.
	RatePerIP int
	// Now is the clock for Received headers and limits (default time.Now).
	Now func() time.Time
	// TempError maps a Submit error to the reply. Default (or nil result): 451 4.3.0.
	TempError func(error) *smtp.SMTPError
	// Observer receives accepted messages and refusals, for metrics.
	Observer Observer
}

// Server is the inbound SMTP listener.
type Server struct {
	cfg    Config
	sub    Submitter
	log    *slog.Logger
	smtp   *smtp.Server
	now    func() time.Time
	macKey []byte
	users  map[string][]byte // user → HMAC-SHA256(macKey, password)
	dummy  []byte            // compared against for unknown users, so that timing does not tell

	baseCtx context.Context
	cancel  context.CancelFunc

	mu           sync.Mutex
	shuttingDown bool
	listeners    []net.Listener // those Serve was given
	serving      sync.WaitGroup // Serve loops still accepting; Add only under mu before shuttingDown
	conns        map[*trackedConn]struct{}
	perIP        map[netip.Addr]int
	rate         map[netip.Addr]*bucket
	authFails    map[netip.Addr]*window
}

// New checks cfg, applies defaults and returns a Server ready to Serve.
func New(cfg Config, sub Submitter, logger *slog.Logger) (*Server, error) {
	var errs []error
	if cfg.Hostname == "" {
		errs = append(errs, errors.New("hostname: required"))
	}
	if sub == nil {
		errs = append(errs, errors.New("submitter: required"))
	}
	for name, v := range map[string]int64{
		"MaxMessageBytes": cfg.MaxMessageBytes, "MaxRecipients": int64(cfg.MaxRecipients),
		"MaxLineLength": int64(cfg.MaxLineLength), "MaxConnsPerIP": int64(cfg.MaxConnsPerIP),
		"RatePerIP": int64(cfg.RatePerIP), "ReadTimeout": int64(cfg.ReadTimeout),
		"WriteTimeout": int64(cfg.WriteTimeout),
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %d", name, v))
		}
	}
	if cfg.MaxLineLength > 0 && cfg.MaxLineLength < 1000 {
		// RFC 5321 Section 4.5.3.1.4/6: command lines of 512 and text lines of 1000 octets must be accepted.
		errs = append(errs, fmt.Errorf("MaxLineLength: must be at least 1000, got %d", cfg.MaxLineLength))
	}
	for i, p := range cfg.RelayNetworks {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("RelayNetworks[%d]: invalid prefix", i))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("smtpserver: config: %w", errors.Join(errs...))
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.MaxLineLength == 0 {
		cfg.MaxLineLength = DefaultMaxLineLength
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	s := &Server{
		cfg:       cfg,
		sub:       sub,
		log:       logger,
		now:       cfg.Now,
		macKey:    make([]byte, 32),
		users:     make(map[string][]byte, len(cfg.Users)),
		conns:     make(map[*trackedConn]struct{}),
		perIP:     make(map[netip.Addr]int),
		rate:      make(map[netip.Addr]*bucket),
		authFails: make(map[netip.Addr]*window),
	}
	// Passwords are kept only as keyed hashes: a memory dump does not reveal them, and comparing
	// fixed-length MACs in constant time does not leak the password length.
	if _, err := rand.Read(s.macKey); err != nil {
		return nil, fmt.Errorf("smtpserver: random key: %w", err)
	}
	for u, p := range cfg.Users {
		s.users[u] = s.mac(p)
	}
	s.dummy = s.mac("")
	s.baseCtx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLS
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	// go-smtp would answer AUTH before TLS with a non-standard 523; allowing it lets the session refuse with
	// RFC 3207's 530 5.7.0 itself. AUTH is advertised only inside TLS (session.AuthMechanisms).
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	srv.EnableREQUIRETLS = true // go-smtp advertises it only after STARTTLS (RFC 8689 Section 4.1)
	srv.EnableDSN = true
	srv.ErrorLog = slogPrintf{logger}
	s.smtp = srv
	return s, nil
}

func (s *Server) mac(password string) []byte {
	m := hmac.New(sha256.New, s.macKey)
	m.Write([]byte(password))
	return m.Sum(nil)
}

// Serve accepts connections on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()
	err := s.smtp.Serve(&limitListener{Listener: ln, srv: s})
	s.mu.Lock()
	down := s.shuttingDown
	s.mu.Unlock()
	if err != nil && !(down && errors.Is(err, net.ErrClosed)) {
		return fmt.Errorf("smtpserver: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections, lets transactions in progress finish and closes idle sessions
// (they get 421). When ctx ends first, the remaining connections are closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shuttingDown = true
	for c := range s.conns {
		if !c.busy {
			c.drain()
		}
	}
	listeners := s.listeners
	s.mu.Unlock()
	// Stop the accept loops before go-smtp's Shutdown waits for its connections: an accept that raced
	// with that wait would add to go-smtp's WaitGroup while it is being waited on.
	for _, ln := range listeners {
		ln.Close()
	}
	s.serving.Wait()

	done := make(chan error, 1)
	go func() { done <- s.smtp.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		s.cancel()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("smtpserver: shutdown: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	// go-smtp's Close is a no-op once Shutdown has begun, so the connections are closed here.
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.Conn.Close()
	}
	s.mu.Unlock()
	return fmt.Errorf("smtpserver: shutdown: %w", ctx.Err())
}

// slogPrintf adapts go-smtp's internal error log to slog.
type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, v ...any) { p.l.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (p slogPrintf) Println(v ...any)               { p.l.Warn("smtp: " + fmt.Sprint(v...)) }
