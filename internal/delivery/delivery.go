// Package delivery makes one delivery attempt for a batch of queued messages to one destination: it picks the
// route (a static smart host, or the domain's MX hosts per RFC 5321 Section 5.1), asks package tlspolicy for
// the Plan, dials each allowed host in order, negotiates STARTTLS (RFC 3207) as the Plan says, sends every
// message of the batch over as few sessions as possible, and classifies each recipient's outcome as
// delivered, deferred or failed. It is the one place where outcomes are classified.
//
// It does not retry (the queue schedules retries) and does not decide TLS (the Plan does).
package delivery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Route is a static route: mail for Domains goes to Hosts instead of the domains' MX hosts.
type Route struct {
	// Domains are A-label domains; "*" matches every domain.
	Domains []string
	// Hosts are smart hosts, "host", "host:port", an IP address or "[IPv6]:port", tried in order. An IP
	// address is dialled as it is and its certificate must name that address.
	Hosts []string
	// Port is used for hosts without a port; 0 means the Deliverer's Port.
	Port  int
	Level tlspolicy.Level
	// AuthUser and AuthPassword, when set, authenticate us to the hosts (AUTH PLAIN or LOGIN, RFC 4954).
	AuthUser     string
	AuthPassword string
	// AuthMinTLS is the weakest channel AUTH is sent over: LevelRequiredVerify (also the zero value: TLS
	// with a verified certificate), LevelRequired (any TLS) or LevelNone (clear text too).
	AuthMinTLS tlspolicy.Level
}

// Recorder receives one result per delivery session for TLS reporting (RFC 8460 Section 4).
type Recorder interface {
	Record(s tlsrpt.Session)
}

// Deliverer implements queue.Deliverer.
type Deliverer struct {
	Resolver dnsx.Resolver
	Decider  *tlspolicy.Decider
	// Routes returns the static routes in force (nil: none).
	Routes func() []Route
	// Dial dials TCP; nil means a net.Dialer with ConnectTimeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Port is the SMTP port of MX hosts: 25, changed only in labs and tests.
	Port int
	// Hostname is sent in EHLO.
	Hostname       string
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	// MaxAddressesPerHost bounds the addresses tried per MX host (RFC 5321 Section 5.1: at least two).
	MaxAddressesPerHost int
	// LocalNames are our own names, for MX loop prevention.
	LocalNames []string
	// Listeners returns the addresses our SMTP listeners are bound to, for MX loop prevention: an MX host
	// whose address and the delivery port are one of them is this gateway (nil: none).
	Listeners func() []netip.AddrPort
	// InterfaceAddrs returns this host's addresses, for listeners on 0.0.0.0 or ::; nil means
	// net.InterfaceAddrs.
	InterfaceAddrs func() ([]netip.Addr, error)
	Recorder       Recorder
	Now            func() time.Time
	// Events, when set, is called for every recipient outcome (metrics).
	Events func(Event)
	// IdleTimeout is how long a session stays open after a batch for the next batch to the same MX (0:
	// sessions are not kept); MaxSessionMessages bounds the messages one session carries (default 1000).
	IdleTimeout        time.Duration
	MaxSessionMessages int

	poolOnce   sync.Once
	sessions   *sessionPool
	sessionSeq atomic.Uint64
}

// Close ends the sessions kept for reuse. Deliveries after Close still work but keep no sessions.
func (d *Deliverer) Close() {
	d.pool().close()
}

func (d *Deliverer) pool() *sessionPool {
	d.poolOnce.Do(func() {
		max := d.MaxSessionMessages
		if max <= 0 {
			max = 1000
		}
		d.sessions = &sessionPool{idle: d.IdleTimeout, maxUses: max}
	})
	return d.sessions
}

// Event is one recipient's outcome in one attempt, as logged.
type Event struct {
	Domain address.Host
	// Result carries, in ResultType, the TLS failure the attempt saw even when it delivered.
	Result     queue.Result
	Plan       string
	Source     tlspolicy.Source
	STSMode    mtasts.Mode
	STSID      string
	Attempt    int
	IP         string
	TLSVersion string
	// Enforced: the plan stops delivery on TLS failures (enforce, required levels, REQUIRETLS), as opposed
	// to testing mode and opportunistic TLS, which only record them.
	Enforced bool
	// Session numbers the SMTP session the result came from (0: none was made), so that counts can be per
	// session rather than per recipient. A kept session has the same number for every batch it carries.
	Session uint64
}

func (d *Deliverer) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Deliver implements queue.Deliverer.
func (d *Deliverer) Deliver(ctx context.Context, b queue.Batch) []queue.Result {
	// Messages differ in what they ask of TLS (REQUIRETLS, TLS-Required: No) and in whether their sessions
	// are reported (TLS reports themselves are not, RFC 8460 Section 3): deliver each kind separately.
	groups := map[groupKey][]queue.Job{}
	var order []groupKey
	for _, j := range b.Jobs {
		k := groupKey{requireTLS: j.RequireTLS, tlsOptional: j.TLSOptional && !j.RequireTLS, report: j.Report}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], j)
	}
	var out []queue.Result
	for _, k := range order {
		out = append(out, d.deliverGroup(ctx, b.Domain, k, groups[k])...)
	}
	return out
}

type groupKey struct{ requireTLS, tlsOptional, report bool }

// attempt is the state of one attempt for a group of jobs.
type attempt struct {
	d       *Deliverer
	domain  address.Host
	plan    *tlspolicy.Plan
	record  bool
	jobs    []queue.Job
	pending map[string]map[address.Address]bool // msg id -> rcpt -> still pending
	results []queue.Result
	// last is the failure to give pending recipients when no host takes them.
	last queue.Result
	// events carries log context per result.
	ip, tlsVersion string
	// noAddress counts hosts proven to have no address.
	noAddress int
	// helo is the name in the current host's greeting, for TLS reports.
	helo string
	// hostSeen and sessionSeen are the TLS failures seen for the current host (MX matching) and session
	// (STARTTLS, handshake, certificate), reported or not; sessionNo numbers the session.
	hostSeen, sessionSeen tlsrpt.ResultType
	sessionNo             uint64
}

func (d *Deliverer) deliverGroup(ctx context.Context, domain address.Host, k groupKey, jobs []queue.Job) []queue.Result {
	a := &attempt{d: d, domain: domain, jobs: jobs, pending: map[string]map[address.Address]bool{}}
	for _, j := range jobs {
		m := map[address.Address]bool{}
		for _, r := range j.Recipients {
			m[r.Addr] = true
		}
		a.pending[j.MsgID] = m
	}
	a.last = queue.Result{Outcome: queue.Deferred, Code: 451, Enhanced: "4.4.1", Text: "no MX host could be reached"}

	hosts, plan, res, ok := d.route(ctx, domain, k)
	if !ok {
		a.plan = plan
		if res.ResultType == tlsrpt.ResultDNSSECInvalid && !k.report && !k.tlsOptional && d.Recorder != nil {
			// No policy could be found for a domain whose MX answer is bogus: the failure is reported all the same.
			d.Recorder.Record(tlsrpt.Session{
				Policy: tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, String: []string{}, Domain: domain.String()}, At: d.now(),
				Failure: &tlsrpt.FailureDetails{ResultType: tlsrpt.ResultDNSSECInvalid, FailureReasonCode: "mx-bogus", AdditionalInfo: res.Text, FailedSessionCount: 1},
			})
		}
		a.finishAll(res)
		return a.results
	}
	a.plan = plan
	a.record = plan.Reportable() && !k.report && d.Recorder != nil
	if ft, detail := plan.DiscoveryFailure(); ft != "" && a.record {
		// RFC 8461 Section 6 / RFC 8460 Section 4.3.2.2: a policy that could not be fetched is reported.
		d.Recorder.Record(tlsrpt.Session{Policy: plan.ReportPolicy(), At: d.now(),
			Failure: &tlsrpt.FailureDetails{ResultType: ft, AdditionalInfo: detail, FailedSessionCount: 1}})
	}
	for _, h := range hosts {
		if a.done() {
			break
		}
		a.tryHost(ctx, h)
	}
	if a.noAddress == len(hosts) {
		// RFC 5321 Section 5.1 (SMTP-5): MX records exist but none of their hosts has an address, and the
		// domain's own address is never used instead.
		a.last.Outcome, a.last.Code, a.last.Enhanced = queue.Failed, 550, "5.4.4"
	}
	a.finishAll(a.last)
	return a.results
}

// target is one host to try.
type target struct {
	name string // MX exchange name or smart host name
	port int
	// literal is set for address-literal recipients.
	literal netip.Addr
	// pref is the MX preference; implicit marks the domain standing in as its own MX.
	pref     uint16
	implicit bool
	// auth is the route whose credentials the host wants (nil: no AUTH).
	auth *Route
	// resolved is set when addrs and addrErr hold the host's address lookup, made early for loop detection.
	resolved bool
	addrs    []netip.Addr
	addrRes  dnsx.Result
	addrErr  error
}

// route resolves the hosts and the plan with Destination. When ok is false, res is the outcome for every
// recipient.
func (d *Deliverer) route(ctx context.Context, domain address.Host, k groupKey) ([]target, *tlspolicy.Plan, queue.Result, bool) {
	dest, err := d.Destination(ctx, PlanRequest{Domain: domain, RequireTLS: k.requireTLS, TLSOptional: k.tlsOptional, Report: k.report})
	if err != nil {
		var u *UndeliverableError
		if errors.As(err, &u) {
			return nil, u.Plan, u.Result, false
		}
		return nil, nil, deferred(451, "4.4.3", err.Error()), false
	}
	return dest.targets, dest.Plan, queue.Result{}, true
}

// MatchRoute returns the static route for domain: an exact match first, then the "*" route.
func (d *Deliverer) MatchRoute(domain string) (Route, bool) {
	if d.Routes == nil {
		return Route{}, false
	}
	var wildcard *Route
	for _, r := range d.Routes() {
		for _, dom := range r.Domains {
			if dom == domain {
				return r, true
			}
			if dom == "*" && wildcard == nil {
				rr := r
				wildcard = &rr
			}
		}
	}
	if wildcard != nil {
		return *wildcard, true
	}
	return Route{}, false
}

func permanent(code int, enh, text string) queue.Result {
	return queue.Result{Outcome: queue.Failed, Code: code, Enhanced: enh, Text: text}
}

func deferred(code int, enh, text string) queue.Result {
	return queue.Result{Outcome: queue.Deferred, Code: code, Enhanced: enh, Text: text}
}

func (a *attempt) done() bool {
	for _, m := range a.pending {
		if len(m) > 0 {
			return false
		}
	}
	return true
}

// finishAll gives every pending recipient the result r.
func (a *attempt) finishAll(r queue.Result) {
	for _, j := range a.jobs {
		for _, rc := range j.Recipients {
			if a.pending[j.MsgID][rc.Addr] {
				a.finish(j, rc.Addr, r)
			}
		}
	}
}

func (a *attempt) finish(j queue.Job, rcpt address.Address, r queue.Result) {
	delete(a.pending[j.MsgID], rcpt)
	r.MsgID, r.Rcpt = j.MsgID, rcpt
	if a.plan != nil {
		if r.Policy == "" {
			r.Policy = a.plan.NameFor(r.RemoteMTA)
		}
		r.PolicySource, r.STSMode, r.STSID = a.plan.Source, a.plan.STSMode, a.plan.STSID
	}
	if r.RemoteMTA != "" {
		r.IP = a.ip
	}
	a.results = append(a.results, r)
	a.d.logEvent(a, j, r)
	if j.Settled != nil {
		// The queue records the message as soon as all its recipients are settled, not when the batch ends.
		j.Settled(r)
	}
}

func (d *Deliverer) logEvent(a *attempt, j queue.Job, r queue.Result) {
	if d.Events == nil {
		return
	}
	ev := Event{Domain: a.domain, Result: r, Attempt: j.Attempt, IP: a.ip, TLSVersion: a.tlsVersion}
	if r.TLS != "" {
		ev.Session = a.sessionNo
	}
	if a.plan != nil {
		ev.Plan, ev.Source, ev.STSMode, ev.STSID = a.plan.NameFor(r.RemoteMTA), a.plan.Source, a.plan.STSMode, a.plan.STSID
		ev.Enforced = a.plan.EnforcingFor(r.RemoteMTA)
	}
	d.Events(ev)
}
