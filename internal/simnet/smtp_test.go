package simnet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/internal/testpki"
)

const testBody = "From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"

// sendTLS delivers testBody over STARTTLS verified against roots with serverName as SNI.
func sendTLS(t *testing.T, addr, serverName string, roots *tls.Config, opts *smtp.MailOptions) error {
	t.Helper()
	cfg := roots.Clone()
	cfg.ServerName = serverName
	c, err := smtp.DialStartTLS(addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return sendOn(c, opts)
}

func sendOn(c *smtp.Client, opts *smtp.MailOptions) error {
	if err := c.Mail("alice@sender.test", opts); err != nil {
		return err
	}
	if err := c.Rcpt("bob@example.com", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(testBody)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func TestReceiverSTARTTLS(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	r, err := n.AddMX(MXOptions{Domain: "example.com", Host: "mx1.example.com", Pref: 10, RequireTLS: true})
	if err != nil {
		t.Fatal(err)
	}

	// The DNS server knows the MX and its address.
	m, err := exchange(t, n, "udp", "example.com", dns.TypeMX, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"example.com. 300 IN MX 10 mx1.example.com."}, answerText(m)); diff != "" {
		t.Errorf("MX (-want +got):\n%s", diff)
	}
	if got := n.DNS.lookupHost("mx1.example.com"); !slices.Equal(got, []netip.Addr{r.IP()}) {
		t.Errorf("A mx1.example.com = %v, want %v", got, r.IP())
	}
	if !n.Block.Contains(r.IP()) {
		t.Errorf("receiver IP %v outside the Net's block %v", r.IP(), n.Block)
	}

	err = sendTLS(t, r.Addr(), "mx1.example.com", &tls.Config{RootCAs: n.RootPool()},
		&smtp.MailOptions{RequireTLS: true, Return: smtp.DSNReturnHeaders, EnvelopeID: "env1"})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := r.WaitMessages(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	got := r.Messages()
	want := []Received{{
		From:       "alice@sender.test",
		MailOpts:   smtp.MailOptions{Body: smtp.Body8BitMIME, RequireTLS: true, Return: smtp.DSNReturnHeaders, EnvelopeID: "env1"},
		To:         []string{"bob@example.com"},
		RcptOpts:   []smtp.RcptOptions{{}},
		Data:       []byte(testBody),
		Helo:       "localhost",
		TLS:        true,
		TLSVersion: tls.VersionTLS13,
		SNI:        "mx1.example.com",
	}}
	ignore := cmpopts.IgnoreFields(Received{}, "RemoteAddr", "ReceivedAt")
	if diff := cmp.Diff(want, got, ignore); diff != "" {
		t.Errorf("Messages (-want +got):\n%s", diff)
	}
	if got[0].ReceivedAt.IsZero() || got[0].RemoteAddr == "" {
		t.Errorf("ReceivedAt %v, RemoteAddr %q: want both set", got[0].ReceivedAt, got[0].RemoteAddr)
	}
	if got := r.Connections(); got != 1 {
		t.Errorf("Connections = %d, want 1", got)
	}
	if diff := cmp.Diff([]string{"mx1.example.com"}, r.SNIs()); diff != "" {
		t.Errorf("SNIs (-want +got):\n%s", diff)
	}
}

// TestReceiverCertificates shows that the client sees the configured chains: untrusted, per-SNI, swapped at
// runtime, and restricted TLS versions.
func TestReceiverCertificates(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	evil := n.EvilCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx.evil.test"}})
	other := n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: []string{"other.test"}})
	r, err := n.AddSMTPHost("mx.evil.test", MXOptions{
		Cert:          &evil,
		CertForSNI:    map[string]*tls.Certificate{"other.test": &other},
		TLSMaxVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	trust := &tls.Config{RootCAs: n.RootPool()}

	var unknown x509.UnknownAuthorityError
	if err := sendTLS(t, r.Addr(), "mx.evil.test", trust, nil); !errors.As(err, &unknown) {
		t.Errorf("EvilCA certificate: err = %v, want x509.UnknownAuthorityError", err)
	}
	if err := sendTLS(t, r.Addr(), "other.test", trust, nil); err != nil {
		t.Errorf("per-SNI certificate: %v", err)
	}
	good := n.TrustedCA.MustIssue(testpki.Leaf{DNSNames: []string{"mx.evil.test"}})
	r.SetCert(&good)
	if err := sendTLS(t, r.Addr(), "mx.evil.test", trust, nil); err != nil {
		t.Errorf("after SetCert: %v", err)
	}
	if err := r.WaitMessages(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Messages() {
		if m.TLSVersion != tls.VersionTLS12 {
			t.Errorf("TLS version %x, want TLS 1.2", m.TLSVersion)
		}
	}
	if diff := cmp.Diff([]string{"mx.evil.test", "other.test", "mx.evil.test"}, r.SNIs()); diff != "" {
		t.Errorf("SNIs, failed handshakes included (-want +got):\n%s", diff)
	}
	if rr := n.DNS.lookupHost("mx.evil.test"); len(rr) != 1 {
		t.Errorf("AddSMTPHost: A records %v, want one", rr)
	}
	if m, err := exchange(t, n, "udp", "evil.test", dns.TypeMX, false); err != nil || len(m.Answer) != 0 {
		t.Errorf("AddSMTPHost: MX evil.test = %v, %v; want no records", m, err)
	}
}

// dialText opens a raw SMTP conversation and reads the greeting.
func dialText(t *testing.T, addr string) *textproto.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c := textproto.NewConn(nc)
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c
}

func cmdExpect(t *testing.T, c *textproto.Conn, want int, format string, args ...any) string {
	t.Helper()
	id, err := c.Cmd(format, args...)
	if err != nil {
		t.Fatal(err)
	}
	c.StartResponse(id)
	defer c.EndResponse(id)
	code, msg, err := c.ReadResponse(want)
	if err != nil {
		t.Fatalf("%s: got %d %s, want %d", format, code, msg, want)
	}
	return msg
}

func TestReceiverSTARTTLSModes(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	tests := []struct {
		mode          StartTLSMode
		advertised    bool
		startTLSReply int
	}{
		{NotOffered, false, 502},
		{Refuse454, true, 454},
		{Refuse502, true, 502},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			r, err := n.AddMX(MXOptions{Domain: tt.mode.String() + ".test", Host: "mx." + tt.mode.String() + ".test",
				STARTTLS: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			c := dialText(t, r.Addr())
			ehlo := cmdExpect(t, c, 250, "EHLO client.test")
			if got := strings.Contains(ehlo, "STARTTLS"); got != tt.advertised {
				t.Errorf("STARTTLS advertised = %v, want %v (EHLO reply %q)", got, tt.advertised, ehlo)
			}
			if !strings.Contains(ehlo, "DSN") || !strings.Contains(ehlo, "SMTPUTF8") {
				t.Errorf("EHLO reply %q lacks DSN or SMTPUTF8", ehlo)
			}
			cmdExpect(t, c, tt.startTLSReply, "STARTTLS")
			// The session goes on in clear, including a body line that looks like STARTTLS.
			cmdExpect(t, c, 250, "MAIL FROM:<alice@sender.test> RET=HDRS")
			cmdExpect(t, c, 250, "RCPT TO:<bob@example.com> NOTIFY=FAILURE")
			cmdExpect(t, c, 354, "DATA")
			cmdExpect(t, c, 250, "Subject: x\r\n\r\nSTARTTLS\r\n.")
			cmdExpect(t, c, 221, "QUIT")
			if err := r.WaitMessages(waitCtx(t), 1); err != nil {
				t.Fatal(err)
			}
			m := r.Messages()[0]
			if m.TLS || m.Helo != "client.test" || string(m.Data) != "Subject: x\r\n\r\nSTARTTLS\r\n" {
				t.Errorf("got TLS=%v helo=%q data=%q", m.TLS, m.Helo, m.Data)
			}
			if m.MailOpts.Return != smtp.DSNReturnHeaders ||
				!cmp.Equal(m.RcptOpts[0].Notify, []smtp.DSNNotify{smtp.DSNNotifyFailure}) {
				t.Errorf("DSN parameters not recorded: %+v %+v", m.MailOpts, m.RcptOpts)
			}
		})
	}
}

func TestReceiverHandshakeFail(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	r, err := n.AddMX(MXOptions{Domain: "example.com", Host: "mx1.example.com", STARTTLS: HandshakeFail})
	if err != nil {
		t.Fatal(err)
	}
	err = sendTLS(t, r.Addr(), "mx1.example.com", &tls.Config{RootCAs: n.RootPool()}, nil)
	if err == nil || !strings.Contains(err.Error(), "tls: internal error") {
		t.Errorf("err = %v, want the server's TLS alert", err)
	}
	if diff := cmp.Diff([]string{"mx1.example.com"}, r.SNIs()); diff != "" {
		t.Errorf("SNIs (-want +got):\n%s", diff)
	}

	// Switching to Offer at runtime lets the next connection through.
	r.SetMode(Offer)
	if err := sendTLS(t, r.Addr(), "mx1.example.com", &tls.Config{RootCAs: n.RootPool()}, nil); err != nil {
		t.Fatalf("after SetMode(Offer): %v", err)
	}
	if len(r.Messages()) != 1 {
		t.Errorf("Messages = %d, want 1", len(r.Messages()))
	}
}

func TestReceiverStopStartAndReplies(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	r, err := n.AddMX(MXOptions{
		Domain: "example.com", Host: "mx1.example.com", STARTTLS: NotOffered,
		RcptReply: func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "unknown@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		},
		DataReply: func(m Received) *smtp.SMTPError {
			if strings.Contains(string(m.Data), "tempfail") {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	c := dialText(t, r.Addr())
	cmdExpect(t, c, 250, "EHLO client.test")
	cmdExpect(t, c, 250, "MAIL FROM:<alice@sender.test>")
	cmdExpect(t, c, 550, "RCPT TO:<unknown@example.com>")
	cmdExpect(t, c, 250, "RCPT TO:<bob@example.com>")
	cmdExpect(t, c, 354, "DATA")
	cmdExpect(t, c, 451, "tempfail\r\n.")
	cmdExpect(t, c, 221, "QUIT")
	if got := len(r.Rejected()); got != 1 {
		t.Errorf("Rejected = %d, want 1", got)
	}
	if got := len(r.Messages()); got != 0 {
		t.Errorf("Messages = %d, want 0", got)
	}

	r.Stop()
	r.Stop() // idempotent
	if c, err := net.DialTimeout("tcp", r.Addr(), 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("dial after Stop succeeded")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	c = dialText(t, r.Addr())
	cmdExpect(t, c, 221, "QUIT")
	if err := r.WaitConnections(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
}

// WaitAccepted returns once a message meeting the condition arrives, and names the condition when ctx
// ends first.
func TestReceiverWaitAccepted(t *testing.T) {
	t.Parallel()
	n := newNet(t)
	r, err := n.AddMX(MXOptions{Domain: "example.com", Host: "mx1.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	fromAlice := func(msgs []Received) bool {
		return slices.ContainsFunc(msgs, func(m Received) bool { return m.From == "alice@sender.test" })
	}
	sent := make(chan error, 1)
	go func() { sent <- sendTLS(t, r.Addr(), "mx1.example.com", &tls.Config{RootCAs: n.RootPool()}, nil) }()
	if err := r.WaitAccepted(waitCtx(t), "a message from alice", fromAlice); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(waitCtx(t))
	cancel()
	err = r.WaitAccepted(ctx, "a message from carol", func(msgs []Received) bool { return len(msgs) > 1 })
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "a message from carol") {
		t.Errorf("WaitAccepted with a cancelled context = %v, want context.Canceled naming the condition", err)
	}
}
