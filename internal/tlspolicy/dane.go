package tlspolicy

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// DANEMode says whether and how DANE (RFC 7672) applies to a Plan's hosts.
type DANEMode string

const (
	// DANEOff: no TLSA lookups (Sender.EnableDANE off and no dane rule, an override rule, TLS-Required: No).
	DANEOff DANEMode = "off"
	// DANEOn: opportunistic DANE: hosts with a secure TLSA RRset must be authenticated by it; the others get
	// the rest of the plan (MTA-STS, the rule or opportunistic TLS).
	DANEOn DANEMode = "on"
	// DANERequired: mandatory DANE (level dane-only, RFC 7672 Section 6): a host without a secure TLSA RRset
	// is not used, and an insecure MX RRset defers the destination (dane-required).
	DANERequired DANEMode = "required"
)

// daneHost is what the Plan knows of one host's TLSA records.
type daneHost struct {
	set dane.TLSASet
	// names are the reference identifiers for DANE-TA(2) (RFC 7672 Section 3.2.2).
	names []string
}

// applies reports whether the host's TLS is governed by DANE: a secure TLSA RRset (usable or not).
func (h *daneHost) applies() bool { return h != nil && h.set.Status == dane.StatusSecure }

// DANE is the plan's DANE mode.
func (p *Plan) DANE() DANEMode {
	if p.daneMode == "" {
		return DANEOff
	}
	return p.daneMode
}

// LookupTLSA reports whether delivery should look up the TLSA records of each host (after its addresses):
// DANE is on and the MX RRset is DNSSEC-secure (RFC 7672 Section 2.2.1; DANE-7). Static routes count as
// secure when their host's own records are (the caller passes the address result).
func (p *Plan) LookupTLSA() bool {
	return p.DANE() != DANEOff && (p.mxSecure || p.routed)
}

// SetDANE gives the Plan the TLSA lookup of host (the MX exchange name), before connecting to it. The
// Verdict says whether host may be used (RFC 7672 Section 2.1.2: a failed or bogus TLSA lookup makes it
// unusable, and the next host is tried) and names the failure to report. Call it for every host when DANE
// is not off, with the zero TLSASet when LookupTLSA is false.
func (p *Plan) SetDANE(host string, set dane.TLSASet) Verdict {
	if p.DANE() == DANEOff {
		return Verdict{Proceed: true}
	}
	if p.dane == nil {
		p.dane = map[string]*daneHost{}
	}
	if set.Status == "" {
		set.Status = dane.StatusNone
	}
	h := &daneHost{set: set}
	p.dane[host] = h
	switch set.Status {
	case dane.StatusBogus:
		// RFC 7672 Section 2.1.2 (DANE-4): never deliver to a server whose TLSA answer is bogus. RFC 8460
		// Section 4.3.2.1: dnssec-invalid, reported under the TLSA policy of the base domain.
		return Verdict{Failure: tlsrpt.ResultDNSSECInvalid, ReasonCode: "tlsa-bogus", Detail: errText(set.Err)}
	case dane.StatusFailed:
		// DANE-4: a failed lookup is not "no TLSA": the host is unusable this time. A transient DNS failure
		// is not reported (RFC 8460 Section 4.3, RPT-23).
		return Verdict{ReasonCode: "tlsa-lookup-failed", Detail: errText(set.Err)}
	case dane.StatusSecure:
		h.names = p.referenceIDs(host, set.BaseDomain)
		if p.DANE() == DANERequired && !set.Usable() {
			// RFC 7672 Section 6 (DANE-16): mandatory DANE needs a usable secure TLSA record; with none the
			// host cannot be authenticated, so it is not used (as Postfix's dane-only defers). The records
			// are at fault, so the report says tlsa-invalid, under the TLSA policy of the base domain.
			return Verdict{Failure: tlsrpt.ResultTLSAInvalid, ReasonCode: dane.ReasonUnusable,
				Detail: fmt.Sprintf("dane-only: no usable TLSA record among %v", dane.Strings(set.RRset))}
		}
		return Verdict{Proceed: true}
	}
	if p.DANE() == DANERequired {
		// RFC 7672 Section 6 (DANE-16): mandatory DANE without a secure TLSA RRset (or with an insecure MX
		// RRset) delays delivery; never plain text, never unauthenticated.
		why := fmt.Sprintf("no DNSSEC-secure TLSA records for %s", host)
		if !p.mxSecure && !p.routed {
			why = fmt.Sprintf("the MX records of %s are not DNSSEC-secure", p.Domain)
		}
		return Verdict{Failure: tlsrpt.ResultDANERequired, ReasonCode: "dane-required", Detail: "dane-only: " + why}
	}
	// RFC 7672 Section 2.2 (DANE-5, DANE-13): no secure TLSA: pre-DANE TLS, that is the rest of the plan.
	return Verdict{Proceed: true}
}

// referenceIDs are the names a DANE-TA(2) certificate may carry (RFC 7672 Section 3.2.2): the TLSA base
// domain, and with a secure MX RRset the next-hop domain and its CNAME expansion. For a static route, the
// host name (the base domain) only.
func (p *Plan) referenceIDs(host, base string) []string {
	names := []string{base}
	if base != host {
		names = append(names, host)
	}
	if p.mxSecure && !p.routed && !p.Domain.IsZero() {
		names = append(names, p.Domain.String())
		if n := len(p.mxCNAMEs); n > 0 {
			names = append(names, p.mxCNAMEs[n-1])
		}
	}
	return names
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (p *Plan) daneHost(host string) *daneHost {
	if p.dane == nil {
		return nil
	}
	return p.dane[host]
}

// DANEKey identifies what DANE asked of a session with host (its base domain and TLSA records), so that a
// session kept for reuse is reused only while the records it was authenticated against are unchanged.
func (p *Plan) DANEKey(host string) string {
	h := p.daneHost(host)
	if h == nil {
		return ""
	}
	return string(h.set.Status) + " " + h.set.BaseDomain + " " + strings.Join(dane.Strings(h.set.RRset), ",")
}

// DANEApplies reports whether host's TLS is governed by a secure TLSA RRset (for logs and explanations).
func (p *Plan) DANEApplies(host string) bool { return p.daneHost(host).applies() }

// TLSABaseDomain is host's TLSA base domain when DANE applies to it, else "".
func (p *Plan) TLSABaseDomain(host string) string {
	if h := p.daneHost(host); h.applies() {
		return h.set.BaseDomain
	}
	return ""
}

// ReportPolicyFor is the RFC 8460 policy the sessions with host are recorded against: the TLSA policy of its
// base domain where DANE applies or its lookup was bogus (RFC 8460 Section 4.4: the Policy Domain of a
// DANE result is the TLSA base domain), else the plan's policy.
func (p *Plan) ReportPolicyFor(host string) tlsrpt.Policy {
	// Spec: RPT-1 and STS-91: a DANE result goes to the _smtp._tls record of its TLSA base domain (as mox),
	// and a session governed by DANE is reported once, under policy-type tlsa, not also under sts.
	h := p.daneHost(host)
	switch {
	case h.applies():
		return tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: dane.Strings(h.set.RRset), Domain: h.set.BaseDomain}
	case h != nil && h.set.Status == dane.StatusBogus:
		base := h.set.BaseDomain
		if base == "" {
			base = host
		}
		return tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{}, Domain: base}
	case h != nil && p.DANE() == DANERequired:
		return tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, String: []string{}, Domain: p.Domain.String()}
	}
	return p.report
}

// daneTLSConfig sets what DANE changes in the client configuration: RFC 7672 Section 8.1 (DANE-25), SNI
// carries the TLSA base domain.
func (p *Plan) daneTLSConfig(host string, c *tls.Config) {
	if h := p.daneHost(host); h.applies() {
		c.ServerName = h.set.BaseDomain
	}
}

// daneCheck is Check for a host governed by DANE. ok is false when DANE does not govern host.
func (p *Plan) daneCheck(host string, cs tls.ConnectionState, requireTLSOffered bool) (Verdict, bool) {
	h := p.daneHost(host)
	if !h.applies() {
		return Verdict{}, false
	}
	if !h.set.Usable() {
		// RFC 7672 Section 2.2 (DANE-12): a secure RRset with no usable record: TLS is mandatory but not
		// authenticated by DANE; the rest of the plan still applies (an enforced MTA-STS policy still asks
		// for PKIX). The unusable RRset is reported. Under dane-only SetDANE has refused the host already;
		// should a session reach here anyway, it never proceeds unauthenticated.
		v := p.pkixCheck(host, cs, requireTLSOffered)
		if p.DANE() == DANERequired {
			v.Proceed = false
		}
		if v.Failure == "" {
			v.Failure, v.ReasonCode = tlsrpt.ResultTLSAInvalid, dane.ReasonUnusable
			v.Detail = fmt.Sprintf("no usable TLSA record among %v", dane.Strings(h.set.RRset))
		}
		return v, true
	}
	r := dane.Verify(cs.PeerCertificates, dane.VerifyRequest{RRset: h.set.RRset, Names: h.names, Now: p.now()})
	v := Verdict{Verified: r.Failure == "", DANE: r.Failure == "", Failure: r.Failure, ReasonCode: r.ReasonCode, Detail: r.Detail}
	switch {
	case r.Failure != "":
		// RFC 7672 Section 3.2 (DANE-22) and RFC 8461 Section 2 (DANE-27, STS-89): a DANE failure is never
		// overridden, neither by MTA-STS nor by PKIX.
		v.Proceed = false
	case p.RequireTLS && !requireTLSOffered:
		// RFC 8689 Section 4.2.1 step 5 (REQ-7).
		v.Proceed, v.Failure, v.ReasonCode = false, "", "requiretls-not-offered"
		v.Detail = fmt.Sprintf("%s did not advertise REQUIRETLS after STARTTLS", host)
	default:
		// RFC 8689 Section 4.2.1 step 4 (REQ-6): DANE authenticates the server as well as PKIX does.
		// Spec: STS-90: a DANE-authenticated host counts as authenticated even where PKIX or an enforced
		// MTA-STS policy's certificate check would fail; AllowMX has already refused hosts outside the
		// policy's MX patterns (as mox does).
		v.Proceed = true
	}
	return v, true
}

// EnforcingFor is Enforcing for a session with host: DANE enforces what it governs (a secure TLSA RRset, or
// dane-only).
func (p *Plan) EnforcingFor(host string) bool {
	return p.Enforcing() || p.daneRequiresTLS(host) || (p.daneHost(host) != nil && p.DANE() == DANERequired)
}

// daneRequiresTLS reports whether DANE makes TLS mandatory with host (a secure TLSA RRset, RFC 7672
// Section 2.2: never plain text).
func (p *Plan) daneRequiresTLS(host string) bool { return p.daneHost(host).applies() }
