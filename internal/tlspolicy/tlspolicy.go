// Package tlspolicy is mxgate's one TLS decision point and its one TLS vocabulary (Level, Rule). For each
// destination it combines MTA-STS (RFC 8461, when Sender.EnableMTASTS is on and a policy applies), DANE
// (RFC 7672, when TLSA records are DNSSEC-secure) and the administrator's per-domain rule, and yields a Plan:
// which MX hosts may be used, whether TLS is required, how the certificate is verified, and what to record
// for TLS reporting (RFC 8460). The strongest rule wins: a rule raises the floor the published policies set
// and never removes one of their checks, unless it says "override".
//
// Nothing else in mxgate decides TLS. Delivery asks the Plan at each step (AllowMX before dialing,
// STARTTLSNotOffered, STARTTLSRefused or HandshakeFailed when STARTTLS is missing or fails, Check after the
// handshake) and does what the Verdict says. Every refusal is
// named by its RFC 8460 result type.
//
// DANE (RFC 7672) is evaluated per host: delivery looks up each host's TLSA records after its addresses and
// gives them to the Plan (SetDANE); a host with a secure TLSA RRset is then governed by DANE, which takes
// precedence over MTA-STS (RFC 8461 Section 2) and is never overridden by it.
package tlspolicy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Level is a TLS security level, with the names administrators know from Postfix and appliances. It is the one
// TLS vocabulary of mxgate: the configuration file, committed settings, the console, the CLI and the daemon all
// parse levels with ParseLevel, and an unknown level is an error everywhere (never dropped or downgraded).
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
	// LevelDANE is RFC 7672 DANE where the domain's TLSA records are DNSSEC-secure.
	LevelDANE Level = "dane"
	// LevelDANEOnly is RFC 7672 DANE required: no delivery without usable DNSSEC-secure TLSA records.
	LevelDANEOnly Level = "dane-only"
)

// Levels returns every level, from the weakest to the strongest.
func Levels() []Level {
	return []Level{LevelNone, LevelOpportunistic, LevelRequired, LevelRequiredVerify, LevelDANE, LevelDANEOnly}
}

// LevelNames is the list of level names for error messages and help texts.
const LevelNames = "none, opportunistic, required, required-verify, dane, dane-only"

// ErrUnknownLevel is wrapped by ParseLevel's error.
var ErrUnknownLevel = errors.New("unknown TLS level")

// ParseLevel parses a level name. Names are exact (lower case, no spaces).
func ParseLevel(s string) (Level, error) {
	switch l := Level(s); l {
	case LevelNone, LevelOpportunistic, LevelRequired, LevelRequiredVerify, LevelDANE, LevelDANEOnly:
		return l, nil
	}
	return "", fmt.Errorf("%w %q (want %s)", ErrUnknownLevel, s, LevelNames)
}

// String returns the level's name.
func (l Level) String() string { return string(l) }

// RequiresTLS reports whether the level refuses plain text.
func (l Level) RequiresTLS() bool { return l.requiresTLS() }

// Verifies reports whether the level requires an authenticated peer (PKIX or DANE).
func (l Level) Verifies() bool { return l.verifies() }

// stronger reports whether l asks for more than m, in the order of Levels.
func (l Level) stronger(m Level) bool {
	return slices.Index(Levels(), l) > slices.Index(Levels(), m)
}

func (l Level) requiresTLS() bool {
	return l == LevelRequired || l.verifies()
}

func (l Level) verifies() bool {
	return l == LevelRequiredVerify || l == LevelDANE || l == LevelDANEOnly
}

// Rule is the administrator's per-domain TLS rule. A rule raises the floor set by the domain's published
// policies (MTA-STS, DANE): it adds checks and never removes one those policies require. Override makes the
// rule replace them instead, for a partner whose published policy is broken; such a plan says so in status,
// explanations and every delivery log event.
type Rule struct {
	Level    Level `json:"level"`
	Override bool  `json:"override,omitempty"`
}

// String is the rule's text form, as stored in committed settings and shown to administrators:
// "required-verify", or "opportunistic override".
func (r Rule) String() string {
	if r.Override {
		return string(r.Level) + " " + overrideWord
	}
	return string(r.Level)
}

const overrideWord = "override"

// ParseRule parses a rule's text form: a level name, optionally followed by the word "override" (the
// attribute syntax of Postfix's TLS policy tables: "level attribute").
func ParseRule(s string) (Rule, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 0:
		return Rule{}, fmt.Errorf("%w: empty rule (want a level: %s; optionally followed by %q)", ErrUnknownLevel, LevelNames, overrideWord)
	case len(f) > 2 || (len(f) == 2 && f[1] != overrideWord):
		return Rule{}, fmt.Errorf("invalid TLS rule %q: want a level (%s), optionally followed by %q", s, LevelNames, overrideWord)
	}
	l, err := ParseLevel(f[0])
	if err != nil {
		return Rule{}, err
	}
	return Rule{Level: l, Override: len(f) == 2}, nil
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
	// TLSRequiredNoRelaxesRules lets "TLS-Required: No" relax the administrator's per-domain rules too, not
	// only the recipient's published policies (Sender.TLSRequiredNoRelaxesRules, default false).
	TLSRequiredNoRelaxesRules bool
	// Rules holds the per-domain TLS rules, keyed by A-label domain.
	Rules map[string]Rule
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
	// MXSecure: the MX RRset was DNSSEC-validated (for RFC 8689 Section 4.2.1 step 2 and RFC 7672 Section
	// 2.2.1).
	MXSecure bool
	// MXCNAMEs is the CNAME chain followed by the MX lookup, for DANE-TA reference identifiers (RFC 7672
	// Section 3.2.2).
	MXCNAMEs []string
}

// ErrSTSLookup wraps a failure of the MTA-STS source that must defer the delivery.
var ErrSTSLookup = errors.New("tlspolicy: MTA-STS lookup failed")

// For returns the Plan for delivering to the MX hosts of req.Domain.
//
// The strongest rule wins: the domain's published MTA-STS policy is applied, and the administrator's rule
// can only raise the level on top of it (an enforce policy keeps its MX check under any rule). A rule with
// Override replaces the published policy instead. Either way the domain's sessions are recorded for TLS
// reports under the policy it publishes.
func (d *Decider) For(ctx context.Context, req Request) (*Plan, error) {
	s := d.settings()
	p := d.newPlan(req.Domain)
	p.RequireTLS = req.RequireTLS && !req.Domain.IsZero()
	p.mxSecure, p.mxCNAMEs = req.MXSecure, req.MXCNAMEs
	rule, hasRule := s.Rules[req.Domain.String()]
	// RFC 7672: DANE applies when Sender.EnableDANE is on, and to a domain whose rule asks for it (dane,
	// dane-only) whatever the global switch.
	if s.EnableDANE {
		p.daneMode = DANEOn
	}

	// RFC 8689 Section 4.2.2: with "TLS-Required: No" (and no REQUIRETLS), recipient TLS policies are
	// ignored; STARTTLS is still used when offered. The administrator's own rule is not a recipient policy:
	// it stays unless Sender.TLSRequiredNoRelaxesRules says otherwise.
	if req.TLSOptional && !req.RequireTLS {
		p.optional = true
		// DANE, as a recipient policy, is ignored too (REQ-11); a dane or dane-only rule of the administrator
		// is not.
		p.daneMode = DANEOff
		if hasRule && !s.TLSRequiredNoRelaxesRules {
			p.Level, p.Source, p.Rule, p.Override = rule.Level, SourceRule, &rule, rule.Override
			if p.applyDANERule(rule) {
				p.Level = LevelOpportunistic
			}
			return p, nil
		}
		p.Level, p.Source = LevelOpportunistic, SourceTLSOptional
		return p, nil
	}

	if hasRule && rule.Override {
		// A deliberate downgrade (or change) for a partner whose published policy is broken. The policy is
		// still looked up, so that sessions are reported under it, but a failed lookup does not defer.
		p.Level, p.Source, p.Rule, p.Override = rule.Level, SourceRule, &rule, true
		// An override replaces DANE as it replaces MTA-STS, unless it asks for DANE itself: then DANE alone
		// decides (hosts without TLSA records get opportunistic TLS, or none under dane-only).
		p.daneMode = DANEOff
		if p.applyDANERule(rule) {
			p.Level = LevelOpportunistic
		}
		if s.EnableMTASTS && d.STS != nil {
			if r, err := d.STS.Lookup(ctx, req.Domain); err == nil && r.Policy != nil && r.Policy.Mode != mtasts.ModeNone {
				// Its checks still run, so that failures are seen and reported; the rule's level decides.
				p.sts, p.STSMode, p.STSID = r.Policy, r.Policy.Mode, r.ID
				p.report = stsReportPolicy(req.Domain, r)
			}
		}
		return p, nil
	}

	p.Level, p.Source = LevelOpportunistic, SourceDefault
	if s.EnableMTASTS && d.STS != nil {
		r, err := d.STS.Lookup(ctx, req.Domain)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrSTSLookup, req.Domain, err)
		}
		p.discoveryFailure, p.discoveryDetail = r.Failure, r.FailureDetail
		switch {
		case r.Policy != nil && r.Policy.Mode != mtasts.ModeNone:
			p.sts, p.STSID, p.STSMode = r.Policy, r.ID, r.Policy.Mode
			p.Source = SourceMTASTS
			p.report = stsReportPolicy(req.Domain, r)
			if r.Policy.Mode == mtasts.ModeEnforce {
				p.Level = LevelRequiredVerify
			}
		case r.Policy != nil:
			p.STSMode, p.STSID = mtasts.ModeNone, r.ID
		}
	}
	if hasRule {
		p.Rule = &rule
		switch {
		case p.applyDANERule(rule):
			// A dane or dane-only rule raises the floor with DANE: hosts with secure TLSA records are
			// authenticated by them; the others keep what MTA-STS or the default gives (RFC 7672 Section 2.2:
			// pre-DANE TLS), and dane-only refuses them in SetDANE.
			if p.Source == SourceDefault {
				p.Source = SourceRule
			}
		case rule.Level.stronger(p.Level):
			p.Level, p.Source = rule.Level, SourceRule
		}
	}
	return p, nil
}

// applyDANERule turns DANE on as a dane or dane-only rule asks, and reports whether r was such a rule.
func (p *Plan) applyDANERule(r Rule) bool {
	switch r.Level {
	case LevelDANE:
		p.daneMode = DANEOn
	case LevelDANEOnly:
		p.daneMode = DANERequired
	default:
		return false
	}
	p.daneRule = true
	return true
}

func stsReportPolicy(domain address.Domain, r STSResult) tlsrpt.Policy {
	return tlsrpt.Policy{
		Type:   tlsrpt.PolicySTS,
		String: r.Policy.Lines, // shared, read-only: cached policies are never modified
		Domain: domain.String(),
		MXHost: r.Policy.MX,
	}
}

// ForRoute returns the Plan at level for a static route (smart host) or an address literal: of req, only
// Domain and RequireTLS count. MTA-STS never applies to static routes: they are not MX routes. Route sessions
// are not recorded for TLS reporting.
func (d *Decider) ForRoute(req Request, level Level) *Plan {
	p := d.newPlan(req.Domain)
	p.Level, p.Source = level, SourceRoute
	p.RequireTLS = req.RequireTLS
	p.routed = true
	switch level {
	case LevelDANE:
		// RFC 7672 Section 2.2.3 (DANE-9): a smart host's TLSA records are at its own name and port.
		p.Level, p.daneMode, p.daneRule = LevelOpportunistic, DANEOn, true
	case LevelDANEOnly:
		p.Level, p.daneMode, p.daneRule = LevelOpportunistic, DANERequired, true
	}
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
