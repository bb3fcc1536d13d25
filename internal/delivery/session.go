package delivery

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/neterr"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// tryHost tries one host: every address it has, up to MaxAddressesPerHost, until the pending recipients are
// settled or the host is proven unusable.
func (a *attempt) tryHost(ctx context.Context, t target) {
	d := a.d
	a.hostSeen = ""
	if v := a.plan.AllowMX(t.name); !v.Proceed || v.Failure != "" {
		a.hostSeen = v.Seen()
		a.recordFailure(t.name, "", v)
		if !v.Proceed {
			// RFC 8461 Section 5 (STS-70): never connect to an MX that fails matching under enforce.
			a.last = policyDeferral(t.name, v)
			return
		}
	}
	addrs := []netip.Addr{t.literal}
	var addrRes dnsx.Result
	if !t.literal.IsValid() {
		ips, res, err := t.addrs, t.addrRes, t.addrErr
		if !t.resolved {
			ips, res, err = mx.AddressesResult(ctx, d.Resolver, t.name)
		}
		if err != nil {
			a.last = deferred(451, "4.4.4", fmt.Sprintf("no address for %s: %v", t.name, err))
			if mx.Permanent(err) {
				a.noAddress++
			}
			a.last.RemoteMTA = t.name
			return
		}
		addrs, addrRes = ips, res
	}
	if !a.daneHost(ctx, t, addrRes) {
		return
	}
	if self := d.selfCheck(t.port); self != nil {
		// A smart host or literal that is one of our own listeners would hand the mail back to us.
		kept := addrs[:0:0]
		for _, ip := range addrs {
			if !self.is(ip) {
				kept = append(kept, ip)
			}
		}
		if len(kept) == 0 {
			a.last = loopResult(a.domain.String())
			a.last.RemoteMTA = t.name
			return
		}
		addrs = kept
	}
	max := d.MaxAddressesPerHost
	if max <= 0 {
		max = 2
	}
	for i, ip := range addrs {
		if i >= max || a.done() {
			return
		}
		if a.session(ctx, t, ip, tlsAsPlanned) == retryPlain {
			// Opportunistic TLS: the handshake failed, retry the same MX in plain text.
			a.session(ctx, t, ip, plainText)
		}
	}
}

// daneHost looks up t's TLSA records when the plan asks for DANE (RFC 7672 Section 2.2.2: after the address
// records) and hands them to the plan. It returns false when t must not be used: a bogus or failed TLSA
// lookup (RFC 7672 Section 2.1.2, DANE-4) or mandatory DANE without secure TLSA records (DANE-16); the
// next host is then tried.
func (a *attempt) daneHost(ctx context.Context, t target, addr dnsx.Result) bool {
	if a.plan.DANE() == tlspolicy.DANEOff {
		return true
	}
	var set dane.TLSASet
	// RFC 7672 Section 2.2 (DANE-14): DANE does not apply to address literals, nor to an MX that (wrongly)
	// names an IP address.
	_, err := netip.ParseAddr(t.name)
	if a.plan.LookupTLSA() && !t.literal.IsValid() && err != nil {
		set = dane.Lookup(ctx, a.d.Resolver, dane.LookupRequest{Host: t.name, Port: t.port, Addr: addr})
	}
	v := a.plan.SetDANE(t.name, set)
	if v.Proceed {
		return true
	}
	a.recordFailure(t.name, "", v)
	if v.Failure == "" {
		// A TLSA lookup that failed for another reason than DNSSEC: temporary, like any DNS failure.
		a.last = deferred(451, "4.4.3", fmt.Sprintf("TLSA lookup for %s failed: %s", t.name, v.Detail))
		a.last.RemoteMTA = t.name
		return false
	}
	a.last = policyDeferral(t.name, v)
	return false
}

// sessionEnd says where what is still pending after a session goes.
type sessionEnd int

const (
	// nextAddress: to the next address or host.
	nextAddress sessionEnd = iota
	// retryPlain: to the same address again, without TLS (opportunistic TLS after a failed handshake).
	retryPlain
)

// transport is how a session starts: STARTTLS as the plan says, or plain text (the retry after a failed
// handshake under opportunistic TLS).
type transport int

const (
	tlsAsPlanned transport = iota
	plainText
)

// session runs one SMTP session with t at ip.
func (a *attempt) session(ctx context.Context, t target, ip netip.Addr, tr transport) sessionEnd {
	plain := tr == plainText
	d := a.d
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(t.port))
	a.ip = ip.String()
	if !plain {
		// A plain-text retry keeps what the failed handshake before it saw.
		a.sessionSeen = ""
		a.sessionNo = d.sessionSeq.Add(1)
	}
	key := poolKey{host: t.name, addr: addr, plan: a.planKey(plain) + "|" + a.plan.DANEKey(t.name)}
	if t.auth != nil {
		// A session authenticated as one user is reused for that user only.
		key.plan += "|auth=" + t.auth.AuthUser
	}
	if s := d.pool().get(key); s != nil {
		// A session kept from an earlier batch under the same plan: RSET proves it is still alive.
		if err := s.c.Reset(); err == nil {
			a.tlsVersion, a.sessionNo = s.tlsDesc, s.no
			a.run(s, key, t)
			return nextAddress
		}
		s.c.Close()
	}
	conn, err := d.dial(ctx, addr)
	if err != nil {
		// RFC 8461 Appendix B (STS-88): a failed TCP connection is not a policy failure.
		a.last = deferred(451, "4.4.1", fmt.Sprintf("connect to %s [%s]: %s", t.name, addr, neterr.Text(err)))
		a.last.RemoteMTA = t.name
		return nextAddress
	}
	c, tlsDesc, failure, err := a.open(ctx, conn, t, plain)
	if err != nil {
		var retry errRetryPlain
		if errors.As(err, &retry) {
			return retryPlain
		}
		if failure != nil {
			a.recordFailure(t.name, ip.String(), *failure)
			a.last = policyDeferral(t.name, *failure)
		} else {
			a.last = replyResult(t.name, err, "session")
			if a.last.Outcome == queue.Failed {
				// A 5xx greeting or EHLO refuses this host, not the recipients: try the next one.
				a.last.Outcome = queue.Deferred
			}
		}
		return nextAddress
	}
	a.tlsVersion = tlsDesc
	if failure != nil && failure.Seen() != "" {
		a.sessionSeen = failure.Seen()
	}
	// One session result for TLS reporting (RFC 8460 Section 4.2): a failure seen on the way (testing mode,
	// STARTTLS missing under opportunistic TLS) or a success. A session reused for later batches is the same
	// session and is not counted again.
	reusable := !plain
	if failure != nil && failure.Failure != "" {
		a.recordFailure(t.name, ip.String(), *failure)
		reusable = false
	} else if a.record && !plain {
		d.Recorder.Record(tlsrpt.Session{Policy: a.plan.ReportPolicyFor(t.name), Success: true, At: d.now()})
	}
	if t.auth != nil {
		ch := channel{tls: tlsDesc != "none", verified: failure != nil && failure.Verified}
		if res, ok := authenticate(c, t, ch); !ok {
			a.last = res
			c.Quit()
			return nextAddress
		}
	}
	a.run(&pooled{c: c, tlsDesc: tlsDesc, noReuse: !reusable, no: a.sessionNo}, key, t)
	return nextAddress
}

// run sends every pending job over s, then keeps s for reuse or ends it. Whatever is still pending then goes
// to the next address or host.
func (a *attempt) run(s *pooled, key poolKey, t target) {
	for _, j := range a.jobs {
		if len(a.pending[j.MsgID]) == 0 {
			continue
		}
		s.uses++
		if err := a.sendJob(s.c, j, t.name, s.tlsDesc); err != nil {
			a.last = replyResult(t.name, err, "session")
			if a.last.Outcome == queue.Failed {
				a.last.Outcome = queue.Deferred
			}
			s.c.Close()
			return
		}
	}
	a.d.pool().put(key, s)
}

// planKey identifies what a session was negotiated under, for reuse.
func (a *attempt) planKey(plain bool) string {
	p := a.plan
	return fmt.Sprintf("%s|%s|%s|%s|%v|%v", p.Name(), p.Source, p.STSID, p.Level, p.RequireTLS, plain)
}

type errRetryPlain struct{ error }

// open greets the server and negotiates TLS as the plan says. On a policy refusal it returns the verdict
// in failure together with an error.
func (a *attempt) open(ctx context.Context, conn net.Conn, t target, plain bool) (*smtp.Client, string, *tlspolicy.Verdict, error) {
	d := a.d
	// Read the greeting ourselves to learn the server's name for TLS reports (RFC 8460 Section 4.4,
	// receiving-mx-helo), then hand the session to go-smtp.
	conn.SetDeadline(time.Now().Add(d.commandTimeout()))
	code, msg, err := textproto.NewReader(bufio.NewReaderSize(oneByteReader{conn}, 1)).ReadResponse(220)
	conn.SetDeadline(time.Time{})
	if err != nil {
		conn.Close()
		if code != 0 {
			return nil, "", nil, &smtp.SMTPError{Code: code, Message: "greeting: " + msg}
		}
		return nil, "", nil, err
	}
	a.helo = ""
	if f := strings.Fields(msg); len(f) > 0 {
		a.helo = f[0]
	}
	c := d.newClient(&greetedConn{Conn: conn, greeting: strings.NewReader("220 " + a.helo + "\r\n")})
	if err := c.Hello(d.Hostname); err != nil {
		c.Close()
		return nil, "", nil, err
	}
	plan := a.plan
	if plain || !plan.UseTLS() {
		// After a failed handshake (already recorded by the first connection), or with TLS level none.
		return c, "none", nil, nil
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		v := plan.STARTTLSNotOffered(t.name)
		if !v.Proceed {
			c.Quit()
			return nil, "", &v, errors.New(v.Detail)
		}
		return c, "none", &v, nil
	}
	// STARTTLS by hand on the raw connection: go-smtp's client has no exported StartTLS with the control
	// over verification and error classification that the Plan needs.
	conn.SetDeadline(time.Now().Add(d.commandTimeout()))
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		conn.Close()
		return nil, "", nil, err
	}
	code, msg, err = textproto.NewReader(bufio.NewReaderSize(oneByteReader{conn}, 1)).ReadResponse(220)
	conn.SetDeadline(time.Time{})
	if err != nil {
		if code == 0 {
			conn.Close()
			return nil, "", nil, err
		}
		v := plan.STARTTLSRefused(t.name, code, msg)
		if !v.Proceed {
			c.Quit()
			return nil, "", &v, errors.New(v.Detail)
		}
		return c, "none", &v, nil
	}
	tconn := tls.Client(conn, plan.TLSConfig(t.name))
	hctx, cancel := context.WithTimeout(ctx, d.commandTimeout())
	err = tconn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		conn.Close()
		v := plan.HandshakeFailed(t.name, err)
		if !v.Proceed {
			return nil, "", &v, errors.New(v.Detail)
		}
		a.recordFailure(t.name, remoteIP(conn), v)
		a.sessionSeen = v.Seen()
		return nil, "", &v, errRetryPlain{err}
	}
	cs := tconn.ConnectionState()
	// RFC 3207 Section 4.2 (SMTP-15, STS-81): forget the pre-TLS EHLO and say EHLO again over TLS.
	tc := d.newClient(&greetedConn{Conn: tconn, greeting: strings.NewReader("220 resumed after STARTTLS\r\n")})
	if err := tc.Hello(d.Hostname); err != nil {
		tconn.Close()
		return nil, "", nil, err
	}
	reqTLS, _ := tc.Extension("REQUIRETLS")
	v := plan.Check(t.name, cs, reqTLS)
	desc := "unverified " + tls.VersionName(cs.Version)
	if v.Verified {
		desc = "verified " + tls.VersionName(cs.Version)
	}
	if v.DANE {
		desc += " (DANE)"
	}
	if !v.Proceed {
		tc.Quit()
		return nil, "", &v, errors.New(v.Detail)
	}
	return tc, desc, &v, nil
}

// sendJob sends one message over c and settles its recipients. A returned error means the session is no
// longer usable; recipients not settled stay pending for the next host.
func (a *attempt) sendJob(c *smtp.Client, j queue.Job, host, tlsDesc string) error {
	// Every result of the session carries the TLS failure it saw, delivered or not (testing mode,
	// opportunistic TLS): the evidence for moving a domain to enforce.
	base := queue.Result{RemoteMTA: host, TLS: tlsDesc, ResultType: cmp.Or(a.sessionSeen, a.hostSeen)}
	opts := &smtp.MailOptions{Size: j.Size, RequireTLS: j.RequireTLS, UTF8: j.SMTPUTF8, EnvelopeID: j.EnvID}
	switch j.Ret {
	case "FULL":
		opts.Return = smtp.DSNReturnFull
	case "HDRS":
		opts.Return = smtp.DSNReturnHeaders
	}
	if ok, _ := c.Extension("REQUIRETLS"); j.RequireTLS && !ok {
		// RFC 8689 Section 4.2.1 (REQ-8): 5.7.30, the server lacks REQUIRETLS. Plan.Check refuses such a
		// session first; this keeps MAIL from being sent without the parameter whatever the plan said.
		a.settleJob(j, withBase(base, permanent(550, "5.7.30", host+" does not support REQUIRETLS")))
		return nil
	}
	if err := c.Mail(j.From.String(), opts); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return err
		}
		c.Reset()
		a.settleJob(j, withBase(base, replyResult(host, err, "MAIL")))
		return nil
	}
	var accepted []address.Address
	for _, r := range j.Recipients {
		if !a.pending[j.MsgID][r.Addr] {
			continue
		}
		if err := c.Rcpt(r.Addr.String(), rcptOptions(r)); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return err
			}
			// RFC 5321 Section 4.2.1 (SMTP-13): a RCPT reply concerns that recipient only.
			a.finish(j, r.Addr, withBase(base, replyResult(host, err, "RCPT")))
			continue
		}
		accepted = append(accepted, r.Addr)
	}
	if len(accepted) == 0 {
		return c.Reset()
	}
	body, err := j.Open()
	if err != nil {
		c.Reset()
		for _, r := range accepted {
			a.finish(j, r, withBase(base, deferred(451, "4.3.0", "reading the queued message: "+err.Error())))
		}
		return nil
	}
	defer body.Close()
	w, err := c.Data()
	if err != nil {
		return a.dataRefused(j, accepted, base, host, err)
	}
	if _, err := io.Copy(w, body); err != nil {
		return err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return a.dataRefused(j, accepted, base, host, err)
	}
	ok := withBase(base, queue.Result{Outcome: queue.Delivered, Code: 250, Text: strings.TrimSpace(resp.StatusText)})
	// RFC 3461 Section 5.2.2: with DSN support the NOTIFY and ORCPT parameters went on (go-smtp sends them
	// only then); without it, a recipient that asked for SUCCESS gets a "relayed" notice from us.
	ok.NextHopDSN, _ = c.Extension("DSN")
	for _, r := range accepted {
		a.finish(j, r, ok)
	}
	return nil
}

func (a *attempt) settleJob(j queue.Job, r queue.Result) {
	for _, rc := range j.Recipients {
		if a.pending[j.MsgID][rc.Addr] {
			a.finish(j, rc.Addr, r)
		}
	}
}

// dataRefused settles the accepted recipients of j with the server's reply to DATA or to the end of data. An
// error that is not a reply (the session broke) is returned, and they stay pending for the next host.
func (a *attempt) dataRefused(j queue.Job, accepted []address.Address, base queue.Result, host string, err error) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return err
	}
	for _, r := range accepted {
		a.finish(j, r, withBase(base, replyResult(host, err, "DATA")))
	}
	return nil
}

func withBase(base, r queue.Result) queue.Result {
	r.RemoteMTA, r.TLS = base.RemoteMTA, base.TLS
	if r.ResultType == "" {
		r.ResultType = base.ResultType
	}
	return r
}

func rcptOptions(r queue.Recipient) *smtp.RcptOptions {
	o := &smtp.RcptOptions{}
	for _, n := range r.Notify {
		o.Notify = append(o.Notify, smtp.DSNNotify(n))
	}
	if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok {
		o.OriginalRecipientType = smtp.DSNAddressType(strings.ToUpper(strings.TrimSpace(typ)))
		o.OriginalRecipient = strings.TrimSpace(addr)
	}
	return o
}

// replyResult classifies an SMTP reply or session error: 2xx delivered, 4xx deferred, 5xx failed, anything
// else (I/O errors, timeouts) deferred. Temporary unless proven permanent.
func replyResult(host string, err error, stage string) queue.Result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		enh := ""
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			enh = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		r := queue.Result{Code: se.Code, Enhanced: enh, Text: fmt.Sprintf("%s: %s", stage, se.Message), RemoteMTA: host}
		switch {
		case se.Code >= 500 && se.Code < 600:
			r.Outcome = queue.Failed
		case se.Code >= 200 && se.Code < 300:
			r.Outcome = queue.Delivered
		default:
			r.Outcome = queue.Deferred
		}
		return r
	}
	return queue.Result{Outcome: queue.Deferred, Code: 451, Enhanced: "4.4.2", Text: fmt.Sprintf("%s with %s: %s", stage, host, neterr.Text(err)), RemoteMTA: host}
}

// policyDeferral is the outcome for recipients that a TLS policy kept from host. Enforced policy failures
// are temporary (RFC 8461 Section 5, STS-83); the queue bounces only at expiry.
func policyDeferral(host string, v tlspolicy.Verdict) queue.Result {
	text := string(v.Failure)
	if v.Detail != "" {
		text += ": " + v.Detail
	}
	if text == "" {
		text = v.ReasonCode
	}
	r := queue.Result{Outcome: queue.Deferred, Code: 451, Enhanced: "4.7.5", Text: text, RemoteMTA: host, ResultType: v.Failure}
	switch v.ReasonCode {
	case "requiretls-mx-not-authenticated":
		// RFC 8689 Section 4.2.1 step 2 (REQ-5): the MX name cannot be authenticated; retrying cannot help.
		r.Outcome, r.Code, r.Enhanced = queue.Failed, 550, "5.7.10"
	case "requiretls-not-offered":
		// RFC 8689 Section 4.2.1 (REQ-8): 5.7.30, the server does not support REQUIRETLS. Spec: permanent once
		// every MX has been tried, as recommended.
		r.Outcome, r.Code, r.Enhanced = queue.Failed, 550, "5.7.30"
	}
	return r
}

// recordFailure records a failed session for TLS reporting.
func (a *attempt) recordFailure(host, ip string, v tlspolicy.Verdict) {
	if !a.record || v.Failure == "" {
		return
	}
	a.d.Recorder.Record(tlsrpt.Session{
		Policy: a.plan.ReportPolicyFor(host),
		At:     a.d.now(),
		Failure: &tlsrpt.FailureDetails{
			ResultType:          v.Failure,
			ReceivingMXHostname: host,
			ReceivingMXHelo:     a.helo,
			ReceivingIP:         ip,
			FailureReasonCode:   v.ReasonCode,
			AdditionalInfo:      v.Detail,
			FailedSessionCount:  1,
		},
	})
}

func (d *Deliverer) dial(ctx context.Context, addr string) (net.Conn, error) {
	ct := d.ConnectTimeout
	if ct <= 0 {
		ct = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, ct)
	defer cancel()
	if d.Dial != nil {
		return d.Dial(ctx, "tcp", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}

func (d *Deliverer) commandTimeout() time.Duration {
	if d.CommandTimeout > 0 {
		return d.CommandTimeout
	}
	return 5 * time.Minute
}

func (d *Deliverer) newClient(conn net.Conn) *smtp.Client {
	c := smtp.NewClient(conn)
	c.CommandTimeout = d.commandTimeout()
	// RFC 5321 Section 4.5.3.2.6 (SMTP-14): at least 10 minutes for the reply to the final dot.
	c.SubmissionTimeout = d.DataTimeout
	if c.SubmissionTimeout <= 0 {
		c.SubmissionTimeout = 10 * time.Minute
	}
	return c
}

// greetedConn replays a greeting before the TLS stream so that a fresh go-smtp client can take over the
// session after STARTTLS and send its EHLO.
type greetedConn struct {
	net.Conn
	greeting *strings.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if g.greeting.Len() > 0 {
		return g.greeting.Read(p)
	}
	return g.Conn.Read(p)
}

// oneByteReader keeps the STARTTLS reply reader from consuming bytes of the TLS handshake that follows.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// remoteIP is the peer address of conn, for TLS report failure details.
func remoteIP(conn net.Conn) string {
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		return ap.Addr().String()
	}
	return ""
}
