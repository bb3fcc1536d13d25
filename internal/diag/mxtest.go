package diag

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/delivery"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Action is what delivery would do with an MX host.
type Action string

// Actions.
const (
	// Deliver: the host passes the policy; mail would be sent to it.
	Deliver Action = "deliver"
	// Refuse: the policy forbids the host (ResultType says why); mail would never be sent to it.
	Refuse Action = "refuse"
	// Unreachable: the host allows delivery as far as the policy is concerned, but could not be reached
	// (RFC 8461 Appendix B: a failed connection is not a policy failure).
	Unreachable Action = "unreachable"
)

// Decision is what delivery under an enforced policy would do with one host.
type Decision struct {
	Action     Action            `json:"action"`
	ResultType tlsrpt.ResultType `json:"result_type,omitempty"`
	ReasonCode string            `json:"reason_code,omitempty"`
	Detail     string            `json:"detail,omitempty"`
}

// HostTest is the probe of one MX host.
type HostTest struct {
	Host     string `json:"host"`
	Pref     uint16 `json:"pref"`
	Implicit bool   `json:"implicit,omitempty"`
	// Addresses are all the host's addresses; Address is the one probed ("ip:port").
	Addresses []string `json:"addresses,omitempty"`
	Address   string   `json:"address,omitempty"`
	Policy    Coverage `json:"policy"`
	// Error says why the probe stopped before a TLS decision (address lookup, connect, greeting, EHLO).
	Error  string `json:"error,omitempty"`
	Banner string `json:"banner,omitempty"`
	// Extensions are the EHLO keywords offered before STARTTLS.
	Extensions []string `json:"extensions,omitempty"`
	STARTTLS   bool     `json:"starttls"`
	// STARTTLSError is a refused STARTTLS or a failed handshake.
	STARTTLSError string   `json:"starttls_error,omitempty"`
	TLS           *TLSInfo `json:"tls,omitempty"`
	// Enforce is what delivery would decide if the policy were in enforce mode; nil without a policy that
	// lists MX patterns.
	Enforce *Decision `json:"enforce,omitempty"`
}

// MXTestReport is the result of TestMX.
type MXTestReport struct {
	Domain  string        `json:"domain"`
	Record  RecordReport  `json:"record"`
	Policy  *PolicyReport `json:"policy,omitempty"`
	Hosts   []HostTest    `json:"hosts"`
	MXError string        `json:"mx_error,omitempty"`
}

// Verdict concludes the test: blocked, unknown (the _mta-sts TXT lookup failed temporarily, so no decision
// can be shown), nothing to test (no MX host), or OK.
func (r *MXTestReport) Verdict() Verdict {
	switch {
	case r.Blocked():
		return VerdictBlocked
	case r.Record.Temporary:
		return VerdictUnknown
	case len(r.Hosts) == 0:
		return VerdictNothingToTest
	}
	return VerdictOK
}

// Blocked reports whether the domain's policy is in enforce mode and refuses every MX host that a decision
// could be made for: no host would get mail. Hosts that were merely unreachable do not count either way, but
// at least one host must have been refused.
func (r *MXTestReport) Blocked() bool {
	if r.Policy == nil || r.Policy.Mode != mtasts.ModeEnforce {
		return false
	}
	refused := false
	for _, h := range r.Hosts {
		if h.Enforce == nil {
			continue
		}
		switch h.Enforce.Action {
		case Deliver:
			return false
		case Refuse:
			refused = true
		}
	}
	return refused
}

// TestMX probes each MX host of domain, in preference order, at its first address: connect, EHLO, STARTTLS,
// handshake with SNI set to the host name, certificate verification, EHLO again, QUIT. It never sends MAIL.
// With an MTA-STS policy it also says what delivery under that policy in enforce mode would decide for each
// host, using the Plan delivery uses. Lookup and probe failures are part of the report; the error is for an
// unusable env or a cancelled ctx.
func TestMX(ctx context.Context, env Env, domain address.Domain) (MXTestReport, error) {
	if err := env.check(); err != nil {
		return MXTestReport{}, err
	}
	if domain.IsZero() {
		return MXTestReport{}, errors.New("diag: empty domain")
	}
	rep := MXTestReport{Domain: domain.String(), Hosts: []HostTest{}}
	var pol *mtasts.Policy
	rep.Record, rep.Policy, pol = discover(ctx, env, domain)
	plan, hosts, enforcing, err := enforcePlan(ctx, env, domain, pol, rep.Record.ID)
	if err != nil {
		rep.MXError = err.Error()
	}
	for _, h := range hosts {
		if ctx.Err() != nil {
			break
		}
		rep.Hosts = append(rep.Hosts, testHost(ctx, env, plan, enforcing, h, pol))
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("diag: test %s: %w", domain, err)
	}
	return rep, nil
}

// enforcePlan asks delivery's own plan builder (delivery.Deliverer.Destination) for the hosts and the Plan
// delivery would follow if pol were in enforce mode. Without a policy that lists MX patterns the plan is
// the default (opportunistic) one, used only for its TLS configuration, and enforcing is false. Hosts of
// equal preference, which delivery shuffles, are listed in a stable order.
func enforcePlan(ctx context.Context, env Env, domain address.Domain, pol *mtasts.Policy, id string) (*tlspolicy.Plan, []mx.Host, bool, error) {
	dec := &tlspolicy.Decider{
		Settings: func() *tlspolicy.Settings { return &tlspolicy.Settings{EnableMTASTS: true} },
		Roots:    env.Roots,
		Now:      env.now,
	}
	enforcing := pol != nil && len(pol.MX) > 0
	if enforcing {
		p := *pol
		p.Mode = mtasts.ModeEnforce
		dec.STS = fixedSTS{tlspolicy.STSResult{Policy: &p, ID: id}}
	}
	dlv := &delivery.Deliverer{Resolver: env.Resolver, Decider: dec, Port: env.port()}
	dest, err := dlv.Destination(ctx, delivery.PlanRequest{Domain: address.DomainHost(domain)})
	if err != nil {
		return nil, nil, enforcing, err
	}
	hosts := make([]mx.Host, 0, len(dest.Hosts))
	for _, h := range dest.Hosts {
		hosts = append(hosts, mx.Host{Name: h.Name, Pref: h.Pref, Implicit: h.Implicit})
	}
	slices.SortStableFunc(hosts, func(a, b mx.Host) int {
		return cmp.Or(cmp.Compare(a.Pref, b.Pref), cmp.Compare(a.Name, b.Name))
	})
	return dest.Plan, hosts, enforcing, nil
}

// fixedSTS is an STSSource that knows one answer.
type fixedSTS struct{ r tlspolicy.STSResult }

func (f fixedSTS) Lookup(context.Context, address.Domain) (tlspolicy.STSResult, error) {
	return f.r, nil
}

func testHost(ctx context.Context, env Env, plan *tlspolicy.Plan, enforcing bool, h mx.Host, pol *mtasts.Policy) HostTest {
	ht := HostTest{Host: h.Name, Pref: h.Pref, Implicit: h.Implicit, Policy: coverage(pol, h.Name)}
	// RFC 8461 Section 5: the MX match comes first; delivery never connects to a host that fails it under
	// enforce. The probe connects anyway, to show what the host offers.
	allow := plan.AllowMX(h.Name)
	tv, reached := probeHost(ctx, env, plan, &ht)
	if !enforcing {
		return ht
	}
	switch {
	case !allow.Proceed:
		ht.Enforce = refusal(allow)
	case !reached:
		ht.Enforce = &Decision{Action: Unreachable, Detail: ht.Error}
	case tv.Proceed:
		ht.Enforce = &Decision{Action: Deliver}
	default:
		ht.Enforce = refusal(tv)
	}
	return ht
}

func refusal(v tlspolicy.Verdict) *Decision {
	return &Decision{Action: Refuse, ResultType: v.Failure, ReasonCode: v.ReasonCode, Detail: v.Detail}
}

// probeHost runs the SMTP dialogue with the host's first address. It returns the Plan's verdict on the TLS
// outcome, and reached=false when the session ended before TLS could be decided (ht.Error says why).
func probeHost(ctx context.Context, env Env, plan *tlspolicy.Plan, ht *HostTest) (v tlspolicy.Verdict, reached bool) {
	ips, _, err := mx.Addresses(ctx, env.Resolver, ht.Host)
	if err != nil {
		ht.Error = "address lookup: " + err.Error()
		return v, false
	}
	for _, ip := range ips {
		ht.Addresses = append(ht.Addresses, ip.String())
	}
	ht.Address = net.JoinHostPort(ips[0].String(), strconv.Itoa(env.port()))

	ctx, cancel := context.WithTimeout(ctx, env.timeout())
	defer cancel()
	conn, err := env.dial(ctx, ht.Address)
	if err != nil {
		ht.Error = "connect: " + err.Error()
		return v, false
	}
	defer conn.Close()
	// One deadline for the whole session, and cancellation of ctx interrupts any read or write.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	s := newDialogue(conn)
	code, msg, err := s.read(220)
	if err != nil {
		ht.Error = "greeting: " + replyError(code, msg, err)
		return v, false
	}
	ht.Banner = strconv.Itoa(code) + " " + firstLine(msg)
	ht.Extensions, err = s.ehlo(env.hostname())
	if err != nil {
		ht.Error = "EHLO: " + err.Error()
		s.quit()
		return v, false
	}
	ht.STARTTLS = hasKeyword(ht.Extensions, "STARTTLS")
	if !ht.STARTTLS {
		s.quit()
		return plan.STARTTLSNotOffered(ht.Host), true
	}
	code, msg, err = s.cmd("STARTTLS", 220)
	if err != nil {
		if code == 0 {
			ht.Error = "STARTTLS: " + err.Error()
			return v, false
		}
		v = plan.STARTTLSRefused(ht.Host, code, msg)
		ht.STARTTLSError = v.Detail
		s.quit()
		return v, true
	}
	if n := s.br.Buffered(); n > 0 {
		// RFC 3207 Section 5: nothing may follow the 220 before the handshake; bytes here would be
		// plain text injected into the TLS session (CVE-2011-0411 class).
		v = plan.HandshakeFailed(ht.Host, fmt.Errorf("%d bytes of plain text followed the 220 reply to STARTTLS", n))
		ht.STARTTLSError = v.Detail
		return v, true
	}
	// The TLS configuration delivery uses: SNI is the MX host name (RFC 8461 Section 7.1), TLS 1.2 or later.
	// Where DANE applies, SNI is the TLSA base domain (RFC 7672 Section 8.1).
	cfg := plan.TLSConfig(ht.Host)
	tconn := tls.Client(conn, cfg)
	if err := tconn.HandshakeContext(ctx); err != nil {
		v = plan.HandshakeFailed(ht.Host, err)
		ht.STARTTLSError = v.Detail
		return v, true
	}
	cs := tconn.ConnectionState()
	ht.TLS = describeTLS(ht.Host, cs, env.Roots, env.now())
	ht.TLS.ServerName = cfg.ServerName
	// RFC 3207 Section 4.2: the pre-TLS EHLO is forgotten; ask again to show what is offered over TLS, and
	// give the Plan what delivery gives it (REQUIRETLS offered or not).
	s = newDialogue(tconn)
	if ext, err := s.ehlo(env.hostname()); err != nil {
		ht.TLS.EHLOError = err.Error()
	} else {
		ht.TLS.Extensions = ext
	}
	s.quit()
	return plan.Check(ht.Host, cs, hasKeyword(ht.TLS.Extensions, "REQUIRETLS")), true
}

// dialogue is a minimal SMTP client: commands and replies, nothing that could send mail.
type dialogue struct {
	w  io.Writer
	br *bufio.Reader
	r  *textproto.Reader
}

func newDialogue(c net.Conn) *dialogue {
	br := bufio.NewReader(c)
	return &dialogue{w: c, br: br, r: textproto.NewReader(br)}
}

func (d *dialogue) read(want int) (int, string, error) {
	return d.r.ReadResponse(want)
}

func (d *dialogue) cmd(line string, want int) (int, string, error) {
	if _, err := io.WriteString(d.w, line+"\r\n"); err != nil {
		return 0, "", err
	}
	return d.read(want)
}

// ehlo sends EHLO and returns the extension lines of a 250 reply (RFC 5321 Section 4.1.1.1).
func (d *dialogue) ehlo(hostname string) ([]string, error) {
	_, msg, err := d.cmd("EHLO "+hostname, 250)
	if err != nil {
		return nil, err // a *textproto.Error names the reply
	}
	lines := strings.Split(msg, "\n")
	return append([]string{}, lines[1:]...), nil
}

// quit ends the session politely; its reply does not matter.
func (d *dialogue) quit() {
	_, _, _ = d.cmd("QUIT", 221)
}

func replyError(code int, msg string, err error) string {
	if code == 0 {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", code, firstLine(msg))
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func hasKeyword(ext []string, kw string) bool {
	for _, e := range ext {
		k, _, _ := strings.Cut(e, " ")
		if strings.EqualFold(k, kw) {
			return true
		}
	}
	return false
}
