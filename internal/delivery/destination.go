package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// PlanRequest names a destination and what the message asks of TLS.
type PlanRequest struct {
	// Domain is the recipient domain, or an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]").
	Domain address.Host
	// RequireTLS: the message was received with REQUIRETLS (RFC 8689).
	RequireTLS bool
	// TLSOptional: the message carries "TLS-Required: No" (RFC 8689 Section 4.2.2).
	TLSOptional bool
	// Report: the message is a TLS report (RFC 8460 Section 3: delivered despite TLS failures).
	Report bool
}

// Host is one host delivery would try, in order.
type Host struct {
	Name string // MX exchange name, smart host name, or the address of an address literal
	Pref uint16
	// Implicit: the domain stands in as its own MX because it has no MX records.
	Implicit bool
	Port     int
	// Literal is set for address-literal recipients.
	Literal netip.Addr
}

// Destination is where delivery would take mail for a domain now, and under which TLS plan.
type Destination struct {
	Hosts []Host
	// Route is the static route that applies, nil for MX routes and address literals.
	Route *Route
	Plan  *tlspolicy.Plan
	// MXSecure: the MX RRset was DNSSEC-validated.
	MXSecure bool

	targets []target // Hosts as delivery tries them (with AUTH and early address lookups)
}

// UndeliverableError says why no destination can be had now, as the outcome delivery gives every recipient:
// deferred for temporary failures (DNS, MTA-STS discovery), failed for permanent ones (NXDOMAIN, null MX, a
// mail loop). Plan is set when the plan was made before the failure.
type UndeliverableError struct {
	Result queue.Result
	Plan   *tlspolicy.Plan
}

func (e *UndeliverableError) Error() string {
	return fmt.Sprintf("%s: %d %s %s", e.Result.Outcome, e.Result.Code, e.Result.Enhanced, e.Result.Text)
}

func undeliverable(r queue.Result) error { return &UndeliverableError{Result: r} }

// Destination resolves the hosts and builds the TLS plan for req. It is the one plan builder: delivery,
// `mxgate policy explain`, `mxgate sts test` and the console all get their plan from it, so they cannot
// disagree. A failure is an *UndeliverableError.
func (d *Deliverer) Destination(ctx context.Context, req PlanRequest) (Destination, error) {
	port := d.Port
	if port == 0 {
		port = 25
	}
	if ip, ok := req.Domain.Literal(); ok {
		// RFC 8461 Section 3.4 (STS-3): address literals have no MTA-STS policy.
		plan := d.Decider.ForRoute(tlspolicy.Request{RequireTLS: req.RequireTLS}, tlspolicy.LevelOpportunistic)
		return withTargets(Destination{Plan: plan}, []target{{name: ip.String(), port: port, literal: ip}}), nil
	}
	dom, ok := req.Domain.Domain()
	if !ok {
		return Destination{}, undeliverable(permanent(501, "5.1.2", "no recipient domain"))
	}
	domain := dom.String()
	if r, ok := d.MatchRoute(domain); ok {
		plan := d.Decider.ForRoute(tlspolicy.Request{Domain: dom, RequireTLS: req.RequireTLS}, r.Level)
		var auth *Route
		if r.AuthUser != "" {
			auth = &r
		}
		var ts []target
		for _, h := range r.Hosts {
			host, p := h, r.Port
			if p == 0 {
				p = port
			}
			// Config validation accepts only host or host:port with a numeric port.
			if hh, ps, err := net.SplitHostPort(h); err == nil {
				if n, err := strconv.Atoi(ps); err == nil {
					host, p = hh, n
				}
			}
			t := target{name: strings.ToLower(host), port: p, auth: auth}
			if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
				// An address literal is dialled as it is: looking it up in DNS would fail.
				t.name, t.literal = ip.String(), ip
			}
			ts = append(ts, t)
		}
		return withTargets(Destination{Route: &r, Plan: plan}, ts), nil
	}
	route, err := mx.Resolve(ctx, d.Resolver, dom, mx.Options{LocalNames: d.LocalNames})
	switch {
	case errors.Is(err, mx.ErrNoSuchDomain):
		// RFC 5321 Section 5.1 (SMTP-2): a domain that does not exist is a permanent error.
		return Destination{}, undeliverable(permanent(550, "5.1.2", fmt.Sprintf("recipient domain %s does not exist (NXDOMAIN)", domain)))
	case errors.Is(err, mx.ErrNullMX):
		// RFC 7505 Section 4.1 (SMTP-6).
		return Destination{}, undeliverable(permanent(556, "5.1.10", fmt.Sprintf("recipient domain %s accepts no mail (null MX)", domain)))
	case errors.Is(err, mx.ErrLoop):
		return Destination{}, undeliverable(loopResult(domain))
	case errors.Is(err, dnsx.ErrBogus):
		// RFC 7672 Section 2.1.2 (DANE-2): a bogus MX RRset delays delivery: no fallback to address records
		// and no bounce. RFC 8460 Section 4.3.2.1: dnssec-invalid.
		r := deferred(451, "4.4.3", fmt.Sprintf("MX records of %s failed DNSSEC validation: %v", domain, err))
		r.ResultType = tlsrpt.ResultDNSSECInvalid
		return Destination{}, undeliverable(r)
	case err != nil:
		// RFC 5321 Section 5.1 (SMTP-3): temporary DNS errors defer.
		return Destination{}, undeliverable(deferred(451, "4.4.3", fmt.Sprintf("MX lookup for %s failed: %v", domain, err)))
	}
	// RFC 8460 Section 3 (RPT-32): reports are delivered despite TLS failures: the rua domain's MTA-STS
	// policy never blocks them, as with TLS-Required: No.
	plan, err := d.Decider.For(ctx, tlspolicy.Request{Domain: dom, RequireTLS: req.RequireTLS, TLSOptional: req.TLSOptional || req.Report, MXSecure: route.Secure, MXCNAMEs: route.CNAMEs})
	if err != nil {
		return Destination{}, undeliverable(deferred(451, "4.4.3", err.Error()))
	}
	ts, ok := d.dropSelf(ctx, route.Hosts, port)
	if !ok {
		return Destination{}, &UndeliverableError{Result: loopResult(domain), Plan: plan}
	}
	return withTargets(Destination{Plan: plan, MXSecure: route.Secure}, ts), nil
}

// withTargets sets dest's targets and the Hosts that describe them.
func withTargets(dest Destination, ts []target) Destination {
	dest.targets = ts
	dest.Hosts = make([]Host, 0, len(ts))
	for _, t := range ts {
		dest.Hosts = append(dest.Hosts, Host{Name: t.name, Pref: t.pref, Implicit: t.implicit, Port: t.port, Literal: t.literal})
	}
	return dest
}
