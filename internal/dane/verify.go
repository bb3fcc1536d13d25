package dane

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// VerifyRequest is what Verify checks a server's chain against.
type VerifyRequest struct {
	// RRset is the secure TLSA RRset of the server's TLSA base domain.
	RRset []dnsx.TLSA
	// Names are the reference identifiers a DANE-TA(2) chain's leaf must carry (RFC 7672 Section 3.2.2): the
	// TLSA base domain first, then, with a secure MX RRset, the next-hop domain and its CNAME expansion.
	Names []string
	// Now is the time DANE-TA(2) chains are validated at. DANE-EE(3) ignores dates.
	Now time.Time
}

// Result is the outcome of Verify. Failure is "" when the chain is authenticated.
type Result struct {
	// Matched is the record that authenticated the chain (valid when Failure is "").
	Matched dnsx.TLSA
	// Failure is the RFC 8460 result type of the failure; ReasonCode and Detail say more.
	Failure    tlsrpt.ResultType
	ReasonCode string
	Detail     string
}

// Reason codes of Verify's failures (RFC 8460 Section 4.3: failure-reason-code).
const (
	ReasonUnusable     = "tlsa-unusable"
	ReasonNoMatch      = "dane-no-match"
	ReasonNoCert       = "no-certificate"
	ReasonNameMismatch = "dane-ta-name-mismatch"
	ReasonTAExpired    = "dane-ta-chain-expired"
)

// Verify authenticates a server's certificate chain (leaf first, as sent) against the TLSA RRset:
//   - DANE-EE(3): the leaf (or its public key) matches; names and validity dates are not checked (RFC 7672
//     Section 3.1.1, RFC 7671 Section 5.1);
//   - DANE-TA(2): a certificate of the chain (or a full certificate in the record) matches and serves as the
//     trust anchor of a normal path validation at req.Now, and the leaf names one of req.Names (RFC 7672
//     Sections 3.1.2 and 3.2.2).
//
// Only usable records count, with digest agility (Agile). With no usable record the Failure is tlsa-invalid
// (ReasonUnusable): RFC 7672 Section 2.2 then asks for TLS without authentication, which the caller decides.
func Verify(chain []*x509.Certificate, req VerifyRequest) Result {
	usable := Agile(req.RRset)
	if len(usable) == 0 {
		return Result{Failure: tlsrpt.ResultTLSAInvalid, ReasonCode: ReasonUnusable,
			Detail: fmt.Sprintf("no usable TLSA record among %v", Strings(req.RRset))}
	}
	if len(chain) == 0 {
		return Result{Failure: tlsrpt.ResultTLSAInvalid, ReasonCode: ReasonNoCert, Detail: "the server sent no certificate"}
	}
	leaf := chain[0]
	for _, t := range usable {
		if t.Usage == UsageDANEEE && matches(t, leaf) {
			// RFC 7672 Section 3.2.1: no name checks, and the certificate's dates are ignored.
			return Result{Matched: t}
		}
	}
	var taFailure *Result
	for _, t := range usable {
		if t.Usage != UsageDANETA {
			continue
		}
		for _, anchor := range anchors(t, chain) {
			r := verifyTA(chain, anchor, req)
			if r.Failure == "" {
				r.Matched = t
				return r
			}
			if taFailure == nil {
				taFailure = &r
			}
		}
	}
	if taFailure != nil {
		return *taFailure
	}
	// Spec: DANE-22: a usable RRset that matches nothing is reported as tlsa-invalid (RFC 8460 Section
	// 4.3.2.1: "none of the records in the RRset were found to be valid"), reason code dane-no-match.
	return Result{Failure: tlsrpt.ResultTLSAInvalid, ReasonCode: ReasonNoMatch,
		Detail: fmt.Sprintf("no TLSA record matches the certificate chain of %q (TLSA %v)", leaf.Subject.CommonName, Strings(req.RRset))}
}

// anchors returns the certificates record t designates as trust anchor: those of the chain above the leaf
// that match it, and for a full certificate record, the certificate itself (RFC 7671 Section 5.2.2).
func anchors(t dnsx.TLSA, chain []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range chain[1:] {
		if matches(t, c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 && t.Selector == SelectorCert && t.MatchingType == MatchFull {
		if c, err := x509.ParseCertificate(t.Data); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// verifyTA validates chain up to anchor and checks the leaf's names (RFC 7672 Section 3.2.2, 3.2.3).
func verifyTA(chain []*x509.Certificate, anchor *x509.Certificate, req VerifyRequest) Result {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   req.Now,
		// Spec: RFC 7672 sets no extended key usage requirement; like Postfix we do not demand serverAuth.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			return Result{Failure: tlsrpt.ResultCertificateExpired, ReasonCode: ReasonTAExpired, Detail: "DANE-TA: " + err.Error()}
		}
		return Result{Failure: tlsrpt.ResultTLSAInvalid, ReasonCode: ReasonNoMatch, Detail: "DANE-TA: " + err.Error()}
	}
	if !NameMatches(leaf, req.Names) {
		ids := leaf.DNSNames
		if len(ids) == 0 {
			ids = []string{leaf.Subject.CommonName}
		}
		return Result{Failure: tlsrpt.ResultCertificateHostMismatch, ReasonCode: ReasonNameMismatch,
			Detail: fmt.Sprintf("DANE-TA: certificate names %v, none of %v", ids, req.Names)}
	}
	return Result{}
}

// NameMatches applies RFC 7672 Section 3.2.3: when the certificate has DNS-IDs (SAN dNSName), only they are
// matched, otherwise its CN-ID. A wildcard is allowed only as the whole left-most label and matches exactly
// one label (the MAY of matching several is not taken).
func NameMatches(leaf *x509.Certificate, names []string) bool {
	ids := leaf.DNSNames
	if len(ids) == 0 && leaf.Subject.CommonName != "" {
		ids = []string{leaf.Subject.CommonName}
	}
	for _, id := range ids {
		for _, n := range names {
			if matchName(id, n) {
				return true
			}
		}
	}
	return false
}

func matchName(pattern, name string) bool {
	pattern = strings.TrimSuffix(strings.ToLower(pattern), ".")
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if pattern == "" || name == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		if strings.Contains(rest, "*") || !strings.Contains(rest, ".") {
			return false
		}
		label, parent, ok := strings.Cut(name, ".")
		return ok && label != "" && parent == rest
	}
	return !strings.Contains(pattern, "*") && pattern == name
}
