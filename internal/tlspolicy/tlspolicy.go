// Package tlspolicy is mxgate's one TLS decision point. For each destination it combines, in this order of
// precedence, the administrator's explicit per-domain rule, DANE (RFC 7672, when TLSA records are
// DNSSEC-secure), MTA-STS (RFC 8461, when Sender.EnableMTASTS is on and a policy applies) and the global
// default (opportunistic), and yields a Plan: which MX hosts may be used, whether TLS is required, how the
// certificate is verified, and what to record for TLS reporting (RFC 8460).
//
// Nothing else in mxgate decides TLS. Delivery asks the Plan at each step (AllowMX before dialing, NoTLS when
// STARTTLS is missing or fails, Check after the handshake) and does what the Verdict says. Every refusal is
// named by its RFC 8460 result type.
//
// DANE is not evaluated yet: the dane and dane-only levels are accepted in configuration and currently
// behave as required-verify (a stricter reading, never a weaker one).
package tlspolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Level is a TLS security level, with the names administrators know from Postfix and appliances.
type Level string

const (
	// LevelNone never uses TLS.
	LevelNone Level = "none"
	// LevelOpportunistic uses STARTTLS when offered, without verification, and falls back to plain text
	// (including a plain-text retry of the same MX when the handshake fails).
	LevelOpportunistic Level = "opportunistic"
	// LevelRequired requires TLS but does not verify the certificate.
	LevelRequired Level = "required"
	// LevelRequiredVerify requires TLS and a certificate that chains to a trusted root, is in date and names
	// the MX host in its SAN.
	LevelRequiredVerify Level = "required-verify"
	// LevelDANE and LevelDANEOnly are RFC 7672 levels.
	LevelDANE     Level = "dane"
	LevelDANEOnly Level = "dane-only"
)

// ParseLevel parses a configured level name.
func ParseLevel(s string) (Level, error) {
	switch l := Level(s); l {
	case LevelNone, LevelOpportunistic, LevelRequired, LevelRequiredVerify, LevelDANE, LevelDANEOnly:
		return l, nil
	}
	return "", fmt.Errorf("unknown TLS level %q (want none, opportunistic, required, required-verify, dane, dane-only)", s)
}

func (l Level) requiresTLS() bool {
	return l == LevelRequired || l.verifies()
}

func (l Level) verifies() bool {
	return l == LevelRequiredVerify || l == LevelDANE || l == LevelDANEOnly
}

// Source says where a Plan's level came from, for logs, the console and `mxgate policy explain`.
type Source string

const (
	SourceRule        Source = "rule"            // the administrator's per-domain rule
	SourceRoute       Source = "route"           // a static route's TLS level
	SourceMTASTS      Source = "mta-sts"         // an MTA-STS policy in enforce or testing mode
	SourceDefault     Source = "default"         // nothing applied: opportunistic
	SourceTLSOptional Source = "tls-required-no" // the message carries "TLS-Required: No" (RFC 8689)
)

// STSResult is what an MTA-STS source knows about a domain at the time of a delivery.
type STSResult struct {
	// Policy is the policy in force, nil when the domain has none (including after failures with no cache).
	Policy *mtasts.Policy
	ID     string
	// Failure is the discovery failure to report for this attempt (sts-policy-fetch-error, ...), or "".
	Failure       tlsrpt.ResultType
	FailureDetail string
}

// STSSource supplies MTA-STS policies (package mtastscache in production).
type STSSource interface {
	Lookup(ctx context.Context, domain address.Domain) (STSResult, error)
}

// Settings is the committed configuration the decision depends on. A new value is swapped in on commit.
type Settings struct {
	EnableMTASTS bool
	EnableDANE   bool
	// Rules holds the per-domain TLS rules, keyed by A-label domain.
	Rules map[string]Level
}

// Decider makes Plans. Its fields are set once at start; Settings is read on every decision so that a
// committed change applies to the next delivery.
type Decider struct {
	Settings func() *Settings
	STS      STSSource
	// Roots are the trusted roots for certificate verification (system pool plus tls.ca_file).
	Roots *x509.CertPool
	// TrustStore, when set, is read for every plan instead of Roots, so that a reloaded tls.ca_file
	// applies to the next delivery.
	TrustStore func() *x509.CertPool
	Now        func() time.Time
	// Sessions caches TLS sessions for resumption across connections to the same MX.
	Sessions tls.ClientSessionCache
}

// Request describes what is being delivered.
type Request struct {
	Domain address.Domain
	// RequireTLS: the message was received with MAIL FROM ... REQUIRETLS (RFC 8689).
	RequireTLS bool
	// TLSOptional: the message carries "TLS-Required: No" (RFC 8689 Section 4.2.2).
	TLSOptional bool
	// MXSecure: the MX RRset was DNSSEC-validated (for RFC 8689 Section 4.2.1 step 2).
	MXSecure bool
}

// ErrSTSLookup wraps a failure of the MTA-STS source that must defer the delivery.
var ErrSTSLookup = errors.New("tlspolicy: MTA-STS lookup failed")

// For returns the Plan for delivering to the MX hosts of req.Domain.
func (d *Decider) For(ctx context.Context, req Request) (*Plan, error) {
	s := d.settings()
	p := d.newPlan(req.Domain)
	p.RequireTLS = req.RequireTLS && !req.Domain.IsZero()
	p.mxSecure = req.MXSecure

	// RFC 8689 Section 4.2.2: with "TLS-Required: No" (and no REQUIRETLS), recipient TLS policies are
	// ignored; STARTTLS is still used when offered.
	if req.TLSOptional && !req.RequireTLS {
		p.Level, p.Source = LevelOpportunistic, SourceTLSOptional
		return p, nil
	}

	if lvl, ok := s.Rules[req.Domain.String()]; ok {
		p.Level, p.Source = lvl, SourceRule
		return p, nil
	}

	if s.EnableMTASTS && d.STS != nil {
		r, err := d.STS.Lookup(ctx, req.Domain)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSTSLookup, req.Domain, err)
		}
		p.discoveryFailure, p.discoveryDetail = r.Failure, r.FailureDetail
		if r.Policy != nil && r.Policy.Mode != mtasts.ModeNone {
			p.sts, p.STSID, p.STSMode = r.Policy, r.ID, r.Policy.Mode
			p.Source = SourceMTASTS
			p.report = tlsrpt.Policy{
				Type:   tlsrpt.PolicySTS,
				String: r.Policy.Lines, // shared, read-only: cached policies are never modified
				Domain: req.Domain.String(),
				MXHost: r.Policy.MX,
			}
			if r.Policy.Mode == mtasts.ModeEnforce {
				p.Level = LevelRequiredVerify
			} else {
				p.Level = LevelOpportunistic
			}
			return p, nil
		}
		if r.Policy != nil {
			p.STSMode, p.STSID = mtasts.ModeNone, r.ID
		}
	}
	p.Level, p.Source = LevelOpportunistic, SourceDefault
	return p, nil
}

// ForRoute returns the Plan for a static route (smart host). MTA-STS never applies to static routes: they
// are not MX routes. Route sessions are not recorded for TLS reporting.
func (d *Decider) ForRoute(domain address.Domain, level Level, requireTLS bool) *Plan {
	p := d.newPlan(domain)
	p.Level, p.Source = level, SourceRoute
	p.RequireTLS = requireTLS
	p.routed = true
	return p
}

func (d *Decider) settings() *Settings {
	if d.Settings == nil {
		return &Settings{EnableMTASTS: true}
	}
	return d.Settings()
}

func (d *Decider) newPlan(domain address.Domain) *Plan {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	roots := d.Roots
	if d.TrustStore != nil {
		roots = d.TrustStore()
	}
	return &Plan{
		Domain:   domain,
		roots:    roots,
		now:      now,
		sessions: d.Sessions,
		report:   tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, String: []string{}, Domain: domain.String()},
	}
}
