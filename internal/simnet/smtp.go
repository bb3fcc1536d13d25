package simnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/testpki"
)

// StartTLSMode is how an SMTP receiver treats STARTTLS (RFC 3207).
type StartTLSMode int

// STARTTLS modes. The zero value offers STARTTLS.
const (
	// Offer advertises STARTTLS and completes the handshake with the configured certificate.
	Offer StartTLSMode = iota
	// NotOffered does not advertise STARTTLS and answers the command with 502.
	NotOffered
	// Refuse454 advertises STARTTLS but answers the command with "454 4.7.0"; the session goes on in clear.
	Refuse454
	// Refuse502 advertises STARTTLS but answers the command with "502 5.5.1"; the session goes on in clear.
	Refuse502
	// HandshakeFail advertises STARTTLS, answers 220 and then aborts the TLS handshake.
	HandshakeFail
)

func (m StartTLSMode) String() string {
	switch m {
	case Offer:
		return "offer"
	case NotOffered:
		return "not-offered"
	case Refuse454:
		return "refuse-454"
	case Refuse502:
		return "refuse-502"
	case HandshakeFail:
		return "handshake-fail"
	}
	return "StartTLSMode(" + strconv.Itoa(int(m)) + ")"
}

// maxMessageBytes bounds what a receiver accepts, so a runaway client cannot exhaust memory.
const maxMessageBytes = 64 << 20

// MXOptions describe an SMTP receiver.
type MXOptions struct {
	// Domain is the recipient domain that gets an MX record pointing at Host (AddMX only).
	Domain string
	// Host is the receiver's host name, e.g. "mx1.example.com"; it gets an A record.
	Host string
	// Pref is the MX preference.
	Pref uint16
	// NoDNS skips adding the A and MX records.
	NoDNS bool

	// STARTTLS is the receiver's STARTTLS behaviour.
	STARTTLS StartTLSMode
	// Cert is the certificate presented; nil means a valid certificate from TrustedCA for Host and the
	// receiver's address (SAN dNSName and iPAddress).
	Cert *tls.Certificate
	// CertForSNI overrides Cert for the given (lower-case) server names.
	CertForSNI map[string]*tls.Certificate
	// TLSMinVersion and TLSMaxVersion restrict the TLS versions; zero means Go's defaults.
	TLSMinVersion, TLSMaxVersion uint16
	// RequireTLS advertises REQUIRETLS (RFC 8689) after STARTTLS.
	RequireTLS bool
	// Users, when set, makes the receiver a relay that requires AUTH (RFC 4954): it offers PLAIN and LOGIN,
	// over TLS and in clear text alike, and refuses MAIL with 530 5.7.0 before a successful AUTH.
	Users map[string]string
	// AuthMechanisms are the SASL mechanisms offered with Users (default PLAIN and LOGIN).
	AuthMechanisms []string

	// MailReply, RcptReply and DataReply decide the replies to MAIL, RCPT and the end of DATA; nil or a nil
	// result accepts.
	MailReply func(from string, opts smtp.MailOptions) *smtp.SMTPError
	RcptReply func(rcpt string) *smtp.SMTPError
	DataReply func(m Received) *smtp.SMTPError
}

// Received is one message transaction that reached the end of DATA.
type Received struct {
	From     string
	MailOpts smtp.MailOptions
	To       []string
	RcptOpts []smtp.RcptOptions // parallel to To
	Data     []byte

	Helo       string
	RemoteAddr string
	// AuthUser and AuthMech are the user and SASL mechanism of a successful AUTH ("" without one).
	AuthUser, AuthMech string
	// TLS is true when the transaction ran over STARTTLS; TLSVersion and SNI then describe the session.
	TLS        bool
	TLSVersion uint16
	SNI        string

	ReceivedAt time.Time
	// Reply is the rejection DataReply returned, nil when the message was accepted.
	Reply *smtp.SMTPError
}

// Receiver is a simulated SMTP host. Its methods are safe for concurrent use.
type Receiver struct {
	n    *Net
	host string
	ip   netip.Addr
	opts MXOptions

	plain, secure *smtp.Server
	plainLn       *chanListener
	secureLn      *chanListener
	tlsIdentity

	mu       sync.Mutex
	sig      signal
	ln       net.Listener // nil while stopped
	mode     StartTLSMode
	conns    int
	snis     []string
	accepted []Received
	rejected []Received
	auths    int
}

// AddMX starts an SMTP receiver for opts.Host on a new address, and adds its A record and the MX record
// opts.Domain → opts.Host (unless opts.NoDNS).
func (n *Net) AddMX(opts MXOptions) (*Receiver, error) {
	if opts.Domain == "" && !opts.NoDNS {
		return nil, errors.New("simnet: AddMX: no Domain")
	}
	r, err := n.AddSMTPHost(opts.Host, opts)
	if err != nil {
		return nil, err
	}
	if !opts.NoDNS {
		n.DNS.AddMX(opts.Domain, opts.Host, opts.Pref)
	}
	return r, nil
}

// AddSMTPHost starts an SMTP receiver for host on a new address and adds its A record (unless opts.NoDNS),
// but no MX record: for static routes and report sinks. opts.Host and opts.Domain are ignored.
func (n *Net) AddSMTPHost(host string, opts MXOptions) (*Receiver, error) {
	if host == "" {
		return nil, errors.New("simnet: SMTP host without a name")
	}
	opts.Host = host
	ln, ip, err := n.listen(n.SMTPPort)
	if err != nil {
		return nil, err
	}
	if opts.Cert == nil {
		// The address too, for clients that dial it as a literal (smart hosts given as IP addresses).
		c, err := n.TrustedCA.Issue(testpki.Leaf{DNSNames: []string{host}, IPAddresses: []netip.Addr{ip}})
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("simnet: %w", err)
		}
		opts.Cert = &c
	}
	r := &Receiver{
		n: n, host: host, ip: ip, opts: opts,
		ln: ln, mode: opts.STARTTLS,
		tlsIdentity: tlsIdentity{cert: opts.Cert, certSNI: opts.CertForSNI, minV: opts.TLSMinVersion, maxV: opts.TLSMaxVersion},
	}
	r.plain = r.newServer(nil)
	r.secure = r.newServer(&tls.Config{GetConfigForClient: r.tlsConfig})
	r.plainLn = newChanListener(ln.Addr())
	r.secureLn = newChanListener(ln.Addr())
	if err := n.onClose(r.close); err != nil {
		ln.Close()
		return nil, err
	}
	err = n.spawn(
		func() { _ = r.plain.Serve(r.plainLn) },
		func() { _ = r.secure.Serve(r.secureLn) },
		func() { r.accept(ln) },
	)
	if err != nil {
		return nil, err // Close ran r.close
	}
	if !opts.NoDNS {
		n.DNS.AddA(host, ip)
	}
	return r, nil
}

func (r *Receiver) newServer(cfg *tls.Config) *smtp.Server {
	s := smtp.NewServer(smtp.BackendFunc(r.newSession))
	s.Domain = r.host
	s.TLSConfig = cfg
	s.EnableSMTPUTF8 = true
	s.EnableDSN = true
	s.EnableREQUIRETLS = r.opts.RequireTLS
	// A relay that requires AUTH takes it in clear text too, so that a client's own refusal can be tested.
	s.AllowInsecureAuth = true
	s.MaxMessageBytes = maxMessageBytes
	s.ReadTimeout = time.Minute
	s.WriteTimeout = time.Minute
	s.ErrorLog = log.New(io.Discard, "", 0)
	return s
}

// accept hands each connection to the go-smtp server for the receiver's current mode.
func (r *Receiver) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns++
		mode := r.mode
		r.sig.broadcast()
		r.mu.Unlock()
		sc := &smtpConn{Conn: c, mode: mode}
		switch mode {
		case NotOffered:
			r.plainLn.push(sc)
		default:
			r.secureLn.push(sc)
		}
	}
}

func (r *Receiver) close() {
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	r.mu.Unlock()
	// Close the channel listeners too: a Serve goroutine that has not registered its listener with go-smtp
	// yet would otherwise block in Accept forever.
	r.plainLn.Close()
	r.secureLn.Close()
	r.plain.Close()
	r.secure.Close()
}

var errHandshakeFail = errors.New("simnet: handshake refused by configuration")

// tlsConfig picks the certificate by SNI and records the SNI of every ClientHello.
func (r *Receiver) tlsConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	r.snis = append(r.snis, hello.ServerName)
	r.sig.broadcast()
	r.mu.Unlock()
	if sc, ok := hello.Conn.(*smtpConn); ok && sc.mode != Offer {
		return nil, errHandshakeFail
	}
	return r.config(hello.ServerName), nil
}

// Host returns the receiver's host name.
func (r *Receiver) Host() string { return r.host }

// IP returns the receiver's address.
func (r *Receiver) IP() netip.Addr { return r.ip }

// Addr returns "ip:port" of the receiver.
func (r *Receiver) Addr() string { return netip.AddrPortFrom(r.ip, uint16(r.n.SMTPPort)).String() }

// Stop closes the listener so that new connections are refused; sessions in progress go on.
func (r *Receiver) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
}

// Start listens again after Stop.
func (r *Receiver) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", r.Addr())
	if err != nil {
		return fmt.Errorf("simnet: %s: %w", r.host, err)
	}
	if err := r.n.spawn(func() { r.accept(ln) }); err != nil {
		ln.Close()
		return err
	}
	r.ln = ln
	return nil
}

// SetMode changes the STARTTLS behaviour for new connections.
func (r *Receiver) SetMode(m StartTLSMode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = m
}

// Messages returns the accepted messages, in order of arrival.
func (r *Receiver) Messages() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.accepted...)
}

// Rejected returns the messages whose DATA was received but rejected by DataReply.
func (r *Receiver) Rejected() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.rejected...)
}

// AuthAttempts returns the number of AUTH commands received.
func (r *Receiver) AuthAttempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.auths
}

// Connections returns the number of TCP connections accepted.
func (r *Receiver) Connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

// SNIs returns the server name of every TLS ClientHello received ("" when the client sent none), including
// handshakes that failed.
func (r *Receiver) SNIs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.snis...)
}

// WaitMessages blocks until at least n messages were accepted or ctx is done.
func (r *Receiver) WaitMessages(ctx context.Context, n int) error {
	return waitFor(ctx, &r.mu, &r.sig, func() (bool, string) {
		return len(r.accepted) >= n, fmt.Sprintf("%d messages at %s (have %d)", n, r.host, len(r.accepted))
	})
}

// WaitAccepted blocks until cond holds of the accepted messages or ctx is done; what names the condition
// in the error. cond is called at once and again after each change at this receiver, with the receiver
// locked: it must not keep the slice or call the receiver's methods.
func (r *Receiver) WaitAccepted(ctx context.Context, what string, cond func(accepted []Received) bool) error {
	return waitFor(ctx, &r.mu, &r.sig, func() (bool, string) {
		return cond(r.accepted), fmt.Sprintf("%s at %s (%d messages)", what, r.host, len(r.accepted))
	})
}

// WaitConnections blocks until at least n connections were accepted or ctx is done.
func (r *Receiver) WaitConnections(ctx context.Context, n int) error {
	return waitFor(ctx, &r.mu, &r.sig, func() (bool, string) {
		return r.conns >= n, fmt.Sprintf("%d connections at %s (have %d)", n, r.host, r.conns)
	})
}

func (r *Receiver) newSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{r: r, helo: c.Hostname(), remote: c.Conn().RemoteAddr().String()}
	if st, ok := c.TLSConnectionState(); ok {
		s.tls, s.tlsVersion, s.sni = true, st.Version, st.ServerName
	}
	return s, nil
}

// session is one go-smtp session; go-smtp starts a new one after STARTTLS.
type session struct {
	r          *Receiver
	helo       string
	remote     string
	tls        bool
	tlsVersion uint16
	sni        string

	from     string
	mailOpts smtp.MailOptions
	to       []string
	rcptOpts []smtp.RcptOptions

	authUser, authMech string
}

func (s *session) Reset() {
	s.from, s.mailOpts, s.to, s.rcptOpts = "", smtp.MailOptions{}, nil, nil
}

func (s *session) Logout() error { return nil }

// AuthMechanisms offers AUTH when the receiver has users.
func (s *session) AuthMechanisms() []string {
	if len(s.r.opts.Users) == 0 {
		return nil
	}
	if m := s.r.opts.AuthMechanisms; m != nil {
		return m
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth checks PLAIN and LOGIN credentials against MXOptions.Users.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if len(s.r.opts.Users) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	s.r.mu.Lock()
	s.r.auths++
	s.r.mu.Unlock()
	check := func(user, pass string) error {
		if want, ok := s.r.opts.Users[user]; !ok || want != pass {
			return smtp.ErrAuthFailed
		}
		s.authUser, s.authMech = user, strings.ToUpper(mech)
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of the LOGIN mechanism, which go-sasl lacks.
type loginServer struct {
	check func(user, pass string) error
	user  *string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch {
	case l.user == nil && response == nil:
		return []byte("Username:"), false, nil
	case l.user == nil:
		u := string(response)
		l.user = &u
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(*l.user, string(response))
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if len(s.r.opts.Users) > 0 && s.authUser == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	var o smtp.MailOptions
	if opts != nil {
		o = *opts
	}
	if f := s.r.opts.MailReply; f != nil {
		if e := f(from, o); e != nil {
			return e
		}
	}
	s.from, s.mailOpts = from, o
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if f := s.r.opts.RcptReply; f != nil {
		if e := f(to); e != nil {
			return e
		}
	}
	var o smtp.RcptOptions
	if opts != nil {
		o = *opts
	}
	s.to = append(s.to, to)
	s.rcptOpts = append(s.rcptOpts, o)
	return nil
}

func (s *session) Data(rd io.Reader) error {
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	m := Received{
		From: s.from, MailOpts: s.mailOpts,
		To: append([]string(nil), s.to...), RcptOpts: append([]smtp.RcptOptions(nil), s.rcptOpts...),
		Data: data, Helo: s.helo, RemoteAddr: s.remote, AuthUser: s.authUser, AuthMech: s.authMech,
		TLS: s.tls, TLSVersion: s.tlsVersion, SNI: s.sni,
		ReceivedAt: s.r.n.now(),
	}
	if f := s.r.opts.DataReply; f != nil {
		m.Reply = f(m)
	}
	r := s.r
	r.mu.Lock()
	if m.Reply != nil {
		r.rejected = append(r.rejected, m)
	} else {
		r.accepted = append(r.accepted, m)
	}
	r.sig.broadcast()
	r.mu.Unlock()
	if m.Reply != nil {
		return m.Reply
	}
	return nil
}

// smtpConn carries the STARTTLS mode chosen at accept time. For the refusing modes it answers the STARTTLS
// command itself, before go-smtp sees it, because go-smtp can only advertise-and-accept or not advertise.
//
// It inspects client lines only until the first command that is not EHLO, HELO, NOOP, RSET or STARTTLS:
// RFC 3207 Section 4 allows STARTTLS only before a mail transaction, and from MAIL on the stream may hold
// message data that must not be parsed as commands. Clients must not pipeline past STARTTLS (RFC 2920
// Section 3.1), so a refusal written here is never reordered with go-smtp's replies.
type smtpConn struct {
	net.Conn
	mode StartTLSMode

	// Read state, used only by go-smtp's single reading goroutine.
	passthrough bool
	pending     []byte // bytes read but not yet split into lines
	out         []byte // lines ready for go-smtp
}

func (c *smtpConn) Read(p []byte) (int, error) {
	if c.mode != Refuse454 && c.mode != Refuse502 {
		return c.Conn.Read(p)
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.passthrough {
			return c.Conn.Read(p)
		}
		buf := make([]byte, 4096)
		n, err := c.Conn.Read(buf)
		c.pending = append(c.pending, buf[:n]...)
		if werr := c.filter(); werr != nil {
			return 0, werr
		}
		if len(c.out) == 0 && err != nil {
			return 0, err
		}
	}
}

// filter moves complete lines from pending to out, answering STARTTLS and dropping it.
func (c *smtpConn) filter() error {
	for !c.passthrough {
		i := bytes.IndexByte(c.pending, '\n')
		if i < 0 {
			if len(c.pending) > 4096 {
				c.passthrough = true
			}
			break
		}
		line := c.pending[:i+1]
		c.pending = c.pending[i+1:]
		verb, _, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
		switch strings.ToUpper(verb) {
		case "STARTTLS":
			reply := "454 4.7.0 TLS not available due to temporary reason\r\n"
			if c.mode == Refuse502 {
				reply = "502 5.5.1 STARTTLS not implemented\r\n"
			}
			if _, err := io.WriteString(c.Conn, reply); err != nil {
				return err
			}
			continue
		case "EHLO", "HELO", "NOOP", "RSET":
		default:
			c.passthrough = true
		}
		c.out = append(c.out, line...)
	}
	if c.passthrough {
		c.out = append(c.out, c.pending...)
		c.pending = nil
	}
	return nil
}

// chanListener is a net.Listener fed by Receiver.accept, so one TCP listener can serve two go-smtp servers.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
