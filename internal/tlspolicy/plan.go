package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/neterr"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Plan is the TLS decision for one destination and one delivery attempt.
type Plan struct {
	Domain address.Domain
	Level  Level
	Source Source
	// STSMode and STSID describe the MTA-STS policy seen ("" when none was found).
	STSMode mtasts.Mode
	STSID   string
	// RequireTLS: the message demands RFC 8689 REQUIRETLS handling.
	RequireTLS bool
	// Rule is the administrator's rule for the domain, nil when none. Override: the rule replaced the
	// domain's published policy instead of raising its floor.
	Rule     *Rule
	Override bool

	sts              *mtasts.Policy
	report           tlsrpt.Policy
	discoveryFailure tlsrpt.ResultType
	discoveryDetail  string
	mxSecure         bool
	mxCNAMEs         []string
	routed           bool
	daneMode         DANEMode
	daneRule         bool
	dane             map[string]*daneHost
	optional         bool
	roots            *x509.CertPool
	now              func() time.Time
	sessions         tls.ClientSessionCache
}

// Reason explains the decision in one sentence (for `mxgate policy explain`, the console and logs). It is
// built on demand so that the decision itself stays cheap.
func (p *Plan) Reason() string {
	switch p.DANE() {
	case DANEOn:
		return p.baseReason() + "; DANE: hosts with DNSSEC-secure TLSA records must be authenticated by them (RFC 7672), whatever the above"
	case DANERequired:
		return "dane-only: only hosts with DNSSEC-secure TLSA records are used, authenticated by them (RFC 7672); the others are refused (dane-required)"
	}
	return p.baseReason()
}

func (p *Plan) baseReason() string {
	switch p.Source {
	case SourceTLSOptional:
		return "the message carries TLS-Required: No, so recipient policies are ignored (RFC 8689 Section 4.2.2)"
	case SourceRule:
		switch {
		case p.optional:
			return fmt.Sprintf("the message carries TLS-Required: No, so recipient policies are ignored (RFC 8689 Section 4.2.2); the per-domain rule for %s still sets %s", p.Domain, p.Level)
		case p.Override && p.STSMode != "":
			return fmt.Sprintf("per-domain rule for %s sets %s and overrides the published MTA-STS policy id %s (mode %s): its checks are not applied", p.Domain, p.Level, p.STSID, p.STSMode)
		case p.Override:
			return fmt.Sprintf("per-domain rule for %s sets %s (override: published policies are not applied)", p.Domain, p.Level)
		case p.sts != nil:
			return fmt.Sprintf("per-domain rule for %s raises the level to %s on top of MTA-STS policy id %s (mode %s), whose MX check still applies", p.Domain, p.Level, p.STSID, p.STSMode)
		}
		return fmt.Sprintf("per-domain rule for %s sets %s", p.Domain, p.Level)
	case SourceRoute:
		return fmt.Sprintf("static route with TLS level %s (MTA-STS does not apply to static routes)", p.Level)
	case SourceMTASTS:
		var floor string
		if p.Rule != nil {
			floor = fmt.Sprintf("; the per-domain rule %s asks for no more", p.Rule.Level)
		}
		if p.STSMode == mtasts.ModeEnforce {
			return fmt.Sprintf("MTA-STS policy id %s in enforce mode: only listed MX hosts, verified TLS%s", p.STSID, floor)
		}
		return fmt.Sprintf("MTA-STS policy id %s in testing mode: checked and reported, delivered regardless%s", p.STSID, floor)
	}
	if p.STSMode == mtasts.ModeNone {
		return fmt.Sprintf("MTA-STS policy id %s in mode none: no policy in force; no rule or policy applies: opportunistic TLS", p.STSID)
	}
	return "no rule or policy applies: opportunistic TLS"
}

// Verdict is the Plan's answer at one step of a delivery session.
type Verdict struct {
	// Proceed: the session may go on (to dialing, or to MAIL FROM).
	Proceed bool
	// Verified: the peer's certificate passed PKIX validation for the MX host name, or DANE authentication.
	Verified bool
	// DANE: the peer was authenticated by its TLSA records (RFC 7672).
	DANE bool
	// Failure names the RFC 8460 result type of what went wrong, "" when the policy was satisfied. In testing
	// mode and for opportunistic TLS a Verdict can proceed and still carry a Failure to record.
	Failure tlsrpt.ResultType
	// ReasonCode is a finer-grained failure-reason-code for TLS reports ("mx-not-in-policy", ...).
	ReasonCode string
	Detail     string
	// Unreported is a failure seen but not reported because no policy asked for the check: an unverifiable
	// certificate under opportunistic TLS. It would fail under an enforcing policy, so it is still shown
	// (delivery result, log, console); Failure is "" then.
	Unreported tlsrpt.ResultType
}

// Seen is the TLS failure this step saw, reported or not ("" when none).
func (v Verdict) Seen() tlsrpt.ResultType {
	if v.Failure != "" {
		return v.Failure
	}
	return v.Unreported
}

// Name is a short label for logs and metrics: "mta-sts enforce", "mta-sts testing", "required-verify", ...
func (p *Plan) Name() string {
	var base string
	switch {
	case p.Source == SourceMTASTS:
		base = "mta-sts " + string(p.STSMode)
	case p.Override:
		// Logged with every delivery: a deliberate downgrade stays visible.
		base = string(p.Level) + " override"
	case p.Source == SourceRule && p.sts != nil:
		base = string(p.Level) + " + mta-sts " + string(p.STSMode)
	default:
		base = string(p.Level)
	}
	if !p.daneRule {
		// Sender.EnableDANE changes nothing for hosts without TLSA records: NameFor names the hosts it governs.
		return base
	}
	switch {
	case p.Override && p.Rule != nil:
		return p.Rule.String()
	case p.DANE() == DANERequired:
		return "dane-only"
	case base == string(LevelOpportunistic):
		return "dane"
	}
	return "dane + " + base
}

// NameFor is Name for a session with host: "dane" (or "dane-only") where DANE governed it, a secure TLSA
// RRset or a bogus TLSA answer, else Name.
func (p *Plan) NameFor(host string) string {
	h := p.daneHost(host)
	if h == nil || (h.set.Status != dane.StatusSecure && h.set.Status != dane.StatusBogus) {
		return p.Name()
	}
	if p.DANE() == DANERequired {
		return "dane-only"
	}
	return "dane"
}

// Enforcing reports whether failures of this plan stop delivery (as opposed to testing mode and
// opportunistic TLS, which only record them).
func (p *Plan) Enforcing() bool { return p.Level.requiresTLS() || p.RequireTLS }

// Reportable reports whether sessions under this plan are recorded for TLS reporting: MX routes only, and
// not when the sender opted out of recipient policies.
func (p *Plan) Reportable() bool { return !p.routed && !p.optional }

// ReportPolicy is the RFC 8460 policy sessions are recorded against.
func (p *Plan) ReportPolicy() tlsrpt.Policy { return p.report }

// DiscoveryFailure is the policy discovery failure to record for this attempt (for example
// sts-policy-fetch-error while a cached policy is applied), or "".
func (p *Plan) DiscoveryFailure() (tlsrpt.ResultType, string) {
	return p.discoveryFailure, p.discoveryDetail
}

// AllowMX is asked before connecting to an MX host (the MX record's exchange name, not a CNAME target).
func (p *Plan) AllowMX(host string) Verdict {
	if p.sts != nil && !p.sts.Matches(host) {
		v := Verdict{
			Failure:    tlsrpt.ResultValidationFailure,
			ReasonCode: "mx-not-in-policy",
			Detail:     fmt.Sprintf("MX host %s does not match the MTA-STS policy's mx patterns", host),
		}
		// RFC 8461 Section 5: in enforce mode "MUST NOT deliver to hosts that fail MX matching"; in testing mode
		// the host is used and the failure reported. Spec: STS-71 has no dedicated result type;
		// validation-failure with reason code mx-not-in-policy is our reading.
		v.Proceed = (p.STSMode == mtasts.ModeTesting || p.Override) && !p.RequireTLS
		return v
	}
	// RFC 8689 Section 4.2.1 step 2: for REQUIRETLS, an MX name not protected by DNSSEC must be authenticated
	// by MTA-STS MX matching. Spec: a testing-mode policy is not enough (REQ-5, as mox).
	if p.RequireTLS && !p.routed && !p.mxSecure && !(p.sts != nil && p.STSMode == mtasts.ModeEnforce) {
		return Verdict{
			Failure:    tlsrpt.ResultValidationFailure,
			ReasonCode: "requiretls-mx-not-authenticated",
			Detail:     fmt.Sprintf("REQUIRETLS: MX host %s is neither DNSSEC-secure nor listed by an enforced MTA-STS policy", host),
		}
	}
	return Verdict{Proceed: true}
}

// UseTLS reports whether STARTTLS should be attempted at all.
func (p *Plan) UseTLS() bool { return p.Level != LevelNone || p.RequireTLS }

// TLSConfig returns the client TLS configuration for host. Verification is done by Check, after the
// handshake, so that every failure can be classified and opportunistic sessions can proceed.
func (p *Plan) TLSConfig(host string) *tls.Config {
	c := &tls.Config{
		// RFC 8461 Section 7.1 (STS-79): SNI carries the MX host name.
		ServerName: host,
		// Certificates are verified in Check with the Plan's roots, clock and RFC 8460 classification.
		InsecureSkipVerify: true, //nolint:gosec // verified in Check
		// RFC 8461 Section 7.2 and RFC 8689 Section 4.2.1 (RFC 7525): TLS 1.2 or later.
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: p.sessions,
		Time:               p.now,
	}
	p.daneTLSConfig(host, c)
	return c
}

// STARTTLSNotOffered is asked when host's EHLO reply does not list STARTTLS (starttls-not-supported). Like
// STARTTLSRefused and HandshakeFailed, it says whether the session may continue, or the host be retried, in
// plain text; these three name every way a session gets no TLS, for delivery and diagnostics alike.
func (p *Plan) STARTTLSNotOffered(host string) Verdict {
	return p.noTLS(host, tlsrpt.ResultSTARTTLSNotSupported, host+" does not offer STARTTLS")
}

// STARTTLSRefused is asked when the host answered STARTTLS with a reply other than 220 (starttls-not-supported);
// text is the reply's text, of which the first line is kept.
func (p *Plan) STARTTLSRefused(host string, code int, text string) Verdict {
	first, _, _ := strings.Cut(text, "\n")
	return p.noTLS(host, tlsrpt.ResultSTARTTLSNotSupported, fmt.Sprintf("STARTTLS refused: %d %s", code, first))
}

// HandshakeFailed is asked when the TLS handshake with the host failed (validation-failure, reason
// tls-handshake-failed).
func (p *Plan) HandshakeFailed(host string, err error) Verdict {
	return p.noTLS(host, tlsrpt.ResultValidationFailure, "TLS handshake failed: "+neterr.Text(err))
}

func (p *Plan) noTLS(host string, failure tlsrpt.ResultType, detail string) Verdict {
	v := Verdict{Failure: failure, Detail: detail}
	if failure == tlsrpt.ResultValidationFailure {
		v.ReasonCode = "tls-handshake-failed"
	}
	// RFC 8461 Section 5 (enforce), RFC 8689 Section 4.2.1 step 4, required levels, and RFC 7672 Section
	// 2.2 for a host with a secure TLSA RRset (DANE-11): never plain text.
	v.Proceed = !p.Enforcing() && !p.daneRequiresTLS(host)
	return v
}

// Check is asked after a successful TLS handshake with host (and, for REQUIRETLS, after the post-TLS EHLO:
// requireTLSOffered says whether it advertised REQUIRETLS).
func (p *Plan) Check(host string, cs tls.ConnectionState, requireTLSOffered bool) Verdict {
	if v, ok := p.daneCheck(host, cs, requireTLSOffered); ok {
		return v
	}
	return p.pkixCheck(host, cs, requireTLSOffered)
}

// pkixCheck is Check without DANE: PKIX verification as the plan's level, MTA-STS policy or REQUIRETLS asks.
func (p *Plan) pkixCheck(host string, cs tls.ConnectionState, requireTLSOffered bool) Verdict {
	failure, reason, detail := VerifyCertificate(host, cs, p.roots, p.now())
	v := Verdict{Verified: failure == "", Failure: failure, ReasonCode: reason, Detail: detail}
	switch {
	case p.RequireTLS && failure != "":
		v.Proceed = false
	case p.RequireTLS && !requireTLSOffered:
		// RFC 8689 Section 4.2.1 step 5 (REQ-7).
		v.Proceed, v.ReasonCode = false, "requiretls-not-offered"
		v.Detail = fmt.Sprintf("%s did not advertise REQUIRETLS after STARTTLS", host)
	case p.Level.verifies():
		v.Proceed = failure == ""
	default:
		// Opportunistic, required (unverified) and MTA-STS testing: TLS is enough to proceed.
		v.Proceed = true
	}
	if !p.Level.verifies() && p.sts == nil && !p.RequireTLS {
		// Without a policy that asks for validation, an unverifiable certificate is not a failure to
		// report (RFC 8460 Section 4.3: no-policy-found sessions count as successful when TLS was used).
		v.Unreported = v.Failure
		v.Failure, v.ReasonCode, v.Detail = "", "", ""
	}
	return v
}

// VerifyCertificate validates the peer chain of cs for host under RFC 8461 Section 4.2 and RFC 6125 rules:
// it chains to roots, is in date at now, and host matches a SAN dNSName (wildcards only as the complete
// left-most label; no CN fallback). It returns the RFC 8460 result type of the first failure, "" when valid.
func VerifyCertificate(host string, cs tls.ConnectionState, roots *x509.CertPool, now time.Time) (tlsrpt.ResultType, string, string) {
	if len(cs.PeerCertificates) == 0 {
		return tlsrpt.ResultCertificateNotTrusted, "no-certificate", "the server sent no certificate"
	}
	leaf := cs.PeerCertificates[0]
	if now.After(leaf.NotAfter) {
		return tlsrpt.ResultCertificateExpired, "leaf-expired", fmt.Sprintf("certificate %s expired at %s", certName(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		// Spec: STS-74 recommends certificate-not-trusted or validation-failure for not-yet-valid.
		return tlsrpt.ResultCertificateNotTrusted, "certificate-not-yet-valid", fmt.Sprintf("certificate %s is not valid before %s", certName(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		// RFC 8460 Section 4.3.3 (RPT-22): a failure-reason-code names the X.509 failure class.
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case errors.As(err, &unknown):
			return tlsrpt.ResultCertificateNotTrusted, "unknown-authority",
				fmt.Sprintf("certificate %s is signed by an authority not in the trust store", certName(leaf))
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return tlsrpt.ResultCertificateExpired, "chain-certificate-expired",
				fmt.Sprintf("certificate %s: %s", certName(leaf), strings.TrimPrefix(err.Error(), "x509: "))
		default:
			return tlsrpt.ResultValidationFailure, "chain-invalid",
				fmt.Sprintf("certificate %s: %s", certName(leaf), strings.TrimPrefix(err.Error(), "x509: "))
		}
	}
	// crypto/x509 matches SAN dNSNames only (no CN fallback since Go 1.15) and wildcards only as the whole
	// left-most label, which is what RFC 8461 Section 4.2 and RFC 6125 Section 6.4.3 ask for. A host that is
	// an IP address (a smart host given as one) is matched against the SAN iPAddress entries instead.
	if err := leaf.VerifyHostname(host); err != nil {
		names := append([]string(nil), leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		return tlsrpt.ResultCertificateHostMismatch, "san-mismatch", fmt.Sprintf("certificate %s names %v, not %s", certName(leaf), names, host)
	}
	return "", "", ""
}

// certName names a certificate for people reading an error (see neterr.Certificate).
func certName(c *x509.Certificate) string { return neterr.Certificate(c) }

// STSFetchResult names a failed MTA-STS policy fetch by its RFC 8460 Section 4.3.2.2 result type (STS-92):
// a certificate problem of the policy host, an invalid policy, or any other fetch failure.
func STSFetchResult(err error) tlsrpt.ResultType {
	switch {
	case errors.Is(err, mtasts.ErrWebPKI):
		return tlsrpt.ResultSTSWebPKIInvalid
	case errors.Is(err, mtasts.ErrPolicyInvalid):
		return tlsrpt.ResultSTSPolicyInvalid
	default:
		return tlsrpt.ResultSTSPolicyFetchError
	}
}
