package smtpserver

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/queue"
)

// session is one SMTP session; go-smtp makes a new one after STARTTLS, so tls is fixed for its lifetime.
type session struct {
	srv  *Server
	conn *trackedConn // nil only if the listener was not ours
	ip   netip.Addr
	helo string
	tls  *tls.ConnectionState

	// mu guards the fields below: with BDAT, go-smtp runs Data in its own goroutine and may call Reset
	// (on RSET or disconnect) while it runs.
	mu       sync.Mutex
	authUser string
	inTx     bool
	env      queue.Envelope
	seen     map[address.Address]bool // recipients already in env
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &session{srv: s, helo: c.Hostname()}
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		sess.tls = &st
		nc = tc.NetConn()
	}
	if tc, ok := nc.(*trackedConn); ok {
		sess.conn = tc
		sess.ip = tc.ip
	} else {
		sess.ip = remoteIP(nc.RemoteAddr())
	}
	s.mu.Lock()
	down := s.shuttingDown
	s.mu.Unlock()
	if down {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down"}
	}
	return sess, nil
}

func smtpErr(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

// relayAllowed: mxgate has no local domains, so every recipient is a relay; the client's network or its
// authentication decides, never the address (which is what defeats the percent/bang/source-route tricks).
func (s *session) relayAllowed() bool {
	s.mu.Lock()
	authed := s.authUser != ""
	s.mu.Unlock()
	if authed {
		return true
	}
	for _, p := range s.srv.cfg.RelayNetworks {
		if s.ip.IsValid() && p.Contains(s.ip) {
			return true
		}
	}
	return false
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// Mail, Rcpt, Data and Auth count each refusal for metrics (observe.go).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	return s.srv.observe(s.mail(from, opts))
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	return s.srv.observe(s.rcpt(to, opts))
}

func (s *session) Data(r io.Reader) error { return s.srv.observe(s.data(r)) }

func (s *session) Auth(mech string) (sasl.Server, error) {
	srv, err := s.auth(mech)
	return srv, s.srv.observe(err)
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	if opts == nil {
		opts = &smtp.MailOptions{}
	}
	s.mu.Lock()
	nested := s.inTx
	s.mu.Unlock()
	if nested {
		// RFC 5321 Section 4.1.4: MAIL starts a transaction; one is already open.
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Nested MAIL command: RSET first")
	}
	// RFC 8689 Section 4.1 / REQ-2: REQUIRETLS only within TLS.
	if opts.RequireTLS && s.tls == nil {
		return smtpErr(530, smtp.EnhancedCode{5, 7, 10}, "REQUIRETLS needs a TLS session: issue STARTTLS first")
	}
	env := queue.Envelope{
		RequireTLS: opts.RequireTLS,
		SMTPUTF8:   opts.UTF8,
		EightBit:   opts.Body == smtp.Body8BitMIME,
		Ret:        string(opts.Return),
		EnvID:      opts.EnvelopeID,
		ClientIP:   s.ip.String(),
	}
	if hasControl(env.EnvID) {
		return smtpErr(501, smtp.EnhancedCode{5, 5, 4}, "Control character in ENVID")
	}
	if from != "" {
		if !opts.UTF8 && hasNonASCII(from) {
			// RFC 6531 Section 3.5.
			return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII sender address needs SMTPUTF8")
		}
		a, err := address.ParseAddress(from)
		if err != nil {
			return smtpErr(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address: %v", err)
		}
		env.From = address.PathTo(a)
	}
	if !s.srv.allowMessage(s.ip) {
		return smtpErr(450, smtp.EnhancedCode{4, 7, 1}, "Message rate limit exceeded for your address, try again later")
	}
	if !s.srv.setBusy(s.conn, true) {
		return smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "Service shutting down, try again later")
	}
	s.mu.Lock()
	s.inTx = true
	s.env = env
	s.seen = make(map[address.Address]bool)
	s.mu.Unlock()
	return nil
}

func (s *session) rcpt(to string, opts *smtp.RcptOptions) error {
	if opts == nil {
		opts = &smtp.RcptOptions{}
	}
	s.mu.Lock()
	utf8 := s.env.SMTPUTF8
	inTx := s.inTx
	s.mu.Unlock()
	if !inTx {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Need MAIL first")
	}
	if !utf8 && hasNonASCII(to) {
		return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII recipient address needs SMTPUTF8")
	}
	a, err := address.ParseAddress(to)
	if err != nil {
		return smtpErr(553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address: %v", err)
	}
	if a.Literal.IsValid() {
		return smtpErr(553, smtp.EnhancedCode{5, 1, 2}, "Address literals are not accepted as recipients")
	}
	if !s.relayAllowed() {
		s.srv.log.Info("relay denied", "ip", s.ip.String(), "rcpt_domain", a.Domain.String())
		return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied")
	}
	r := queue.Recipient{Addr: a}
	for _, n := range opts.Notify {
		r.Notify = append(r.Notify, string(n))
	}
	if opts.OriginalRecipient != "" {
		// go-smtp has xtext-decoded it (RFC 3461 Section 4); the utf-8 form may still decode to controls.
		if hasControl(opts.OriginalRecipient) {
			return smtpErr(501, smtp.EnhancedCode{5, 5, 4}, "Control character in ORCPT")
		}
		r.ORcpt = strings.ToLower(string(opts.OriginalRecipientType)) + ";" + opts.OriginalRecipient
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen[r.Addr] {
		s.seen[r.Addr] = true
		s.env.Recipients = append(s.env.Recipients, r)
	}
	return nil
}

func (s *session) Reset() {
	s.mu.Lock()
	wasTx := s.inTx
	s.inTx = false
	s.env = queue.Envelope{}
	s.seen = nil
	s.mu.Unlock()
	if wasTx {
		s.srv.setBusy(s.conn, false)
	}
}

func (s *session) Logout() error {
	s.Reset()
	return nil
}

// Data streams the message to the Submitter. The reply for success is returned as an *smtp.SMTPError with
// code 250, which is how go-smtp lets a backend choose the text ("queued as <id>").
func (s *session) data(r io.Reader) error {
	s.mu.Lock()
	env := s.env
	env.Recipients = append([]queue.Recipient(nil), s.env.Recipients...)
	authed := s.authUser != ""
	s.mu.Unlock()
	if len(env.Recipients) == 0 {
		return smtpErr(554, smtp.EnhancedCode{5, 5, 1}, "No valid recipients")
	}

	chk := &lineEndingReader{r: r}
	msg, err := readHeader(chk)
	if err != nil {
		return s.dataError(chk, err)
	}
	// RFC 8689 Section 4.1 / REQ-3, REQ-13.
	switch {
	case msg.received > maxHops:
		// RFC 5321 Section 6.3: a message with this many hops is in a mail loop.
		s.srv.log.Warn("message refused: mail loop", "ip", s.ip.String(), "hops", msg.received)
		return smtpErr(554, smtp.EnhancedCode{5, 4, 6}, "Too many hops (%d Received header fields): mail loop", msg.received)
	case msg.tlsRequired > 1:
		// Spec: RFC 8689 Section 5 says a message has at most one TLS-Required field; we read several as
		// malformed rather than guess which one the author meant.
		return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message has more than one TLS-Required header field")
	case msg.tlsRequired == 1 && strings.EqualFold(msg.tlsValue, "No") && !env.RequireTLS:
		env.TLSOptional = true
	}

	received := s.received(env, authed)
	counted := &countingReader{r: io.MultiReader(strings.NewReader(received), bytes.NewReader(msg.head), msg.rest), now: s.srv.now}
	id, subErr := s.srv.sub.Submit(s.srv.baseCtx, env, counted)
	if chk.err != nil {
		if subErr == nil {
			s.srv.log.Error("submitter stored a message although reading it failed", "msg_id", id, "ip", s.ip.String(), "err", chk.err)
		}
		return s.dataError(chk, chk.err)
	}
	if subErr != nil {
		s.srv.log.Warn("submit failed", "ip", s.ip.String(), "err", subErr)
		return s.tempError(subErr)
	}
	if n, _ := counted.Read(make([]byte, 1)); n > 0 || chk.err != nil {
		// The Submitter broke its contract: the queued copy may be truncated.
		s.srv.log.Error("submitter returned before reading the whole message", "msg_id", id, "ip", s.ip.String())
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Internal error queueing message, try again later")
	}
	tlsDesc := "none"
	if s.tls != nil {
		tlsDesc = tlsVersionName(s.tls.Version)
	}
	if s.srv.cfg.Observer.Accepted != nil {
		var commit time.Duration
		if !counted.eof.IsZero() {
			commit = s.srv.now().Sub(counted.eof)
		}
		s.srv.cfg.Observer.Accepted(Accepted{Authenticated: authed, Commit: commit})
	}
	s.srv.log.Info("message accepted", "msg_id", id, "from", env.From, "rcpts", len(env.Recipients),
		"size", counted.n, "ip", s.ip.String(), "tls", tlsDesc, "auth", authed)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

func (s *session) tempError(err error) error {
	if s.srv.cfg.TempError != nil {
		if e := s.srv.cfg.TempError(err); e != nil {
			return e
		}
	}
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure queueing message, try again later")
}

// dataError maps a failure reading the message to a reply; nothing has been queued.
func (s *session) dataError(chk *lineEndingReader, err error) error {
	var se *smtp.SMTPError
	switch {
	case errors.Is(err, errBareLF), errors.Is(err, errBareCR):
		s.srv.log.Warn("message refused: bare line ending", "ip", s.ip.String(), "err", err)
		return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "%v in message data; lines must end with CRLF (refused to prevent SMTP smuggling)", err)
	case errors.Is(err, errHeaderTooLarge):
		return smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message header section larger than %d bytes", maxHeaderBytes)
	case errors.Is(err, smtp.ErrTooLongLine):
		return smtpErr(500, smtp.EnhancedCode{5, 5, 2}, "Line too long")
	case errors.Is(err, smtp.ErrDataReset):
		return smtp.ErrDataReset
	case errors.As(err, &se):
		return se // ErrDataTooLarge: 552 5.3.4
	}
	s.srv.log.Info("reading message failed", "ip", s.ip.String(), "err", err)
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Error reading message data")
}

// AuthMechanisms offers AUTH only inside TLS (RFC 4954 Section 4, RFC 3207 Section 4).
func (s *session) AuthMechanisms() []string {
	if s.tls == nil || len(s.srv.users) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) auth(mech string) (sasl.Server, error) {
	if s.tls == nil {
		if s.srv.cfg.TLS != nil {
			return nil, smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
		}
		return nil, smtpErr(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
	}
	if len(s.srv.users) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	if s.srv.authLocked(s.ip) {
		return nil, smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentication attempts, try again later")
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return s.authResult("", false)
			}
			return s.authResult(user, s.srv.checkPassword(user, pass))
		}), nil
	case sasl.Login:
		return &loginServer{check: func(user, pass string) error {
			return s.authResult(user, s.srv.checkPassword(user, pass))
		}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) authResult(user string, ok bool) error {
	if !ok {
		s.srv.rejected(ReasonAuthFailed)
		s.srv.authFailed(s.ip)
		s.srv.log.Info("authentication failed", "ip", s.ip.String())
		return smtp.ErrAuthFailed
	}
	s.mu.Lock()
	s.authUser = user
	s.mu.Unlock()
	s.srv.log.Info("authenticated", "ip", s.ip.String(), "user", user)
	return nil
}

func (s *Server) checkPassword(user, pass string) bool {
	want, ok := s.users[user]
	if !ok {
		want = s.dummy
	}
	eq := subtle.ConstantTimeCompare(s.mac(pass), want) == 1
	return ok && eq
}

// loginServer is the server side of the LOGIN mechanism (draft-murchison-sasl-login), which go-sasl lacks.
type loginServer struct {
	check func(user, pass string) error
	user  *string
	done  bool
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch {
	case l.done:
		return nil, true, sasl.ErrUnexpectedClientResponse
	case l.user == nil && response == nil:
		return []byte("Username:"), false, nil
	case l.user == nil:
		u := string(response)
		l.user = &u
		return []byte("Password:"), false, nil
	}
	l.done = true
	return nil, true, l.check(*l.user, string(response))
}
