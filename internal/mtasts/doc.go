// Package mtasts implements the pure parts of SMTP MTA Strict Transport Security (MTA-STS, RFC 8461,
// https://www.rfc-editor.org/rfc/rfc8461): parsing the _mta-sts TXT record (Section 3.1) and the policy body
// (Section 3.2), matching MX host names against policy patterns (Section 4.1), and fetching a policy over
// HTTPS with the restrictions of Section 3.3 (no redirects, no HTTP caching, WebPKI validation, size and time
// limits).
//
// It deliberately does not look up DNS (callers pass the TXT strings, already concatenated per record, and a
// LookupIP function), cache policies, apply a policy to a delivery, or validate MX certificates: package
// mtastscache keeps policies and decides when to refetch, and package tlspolicy applies them.
//
// Errors carry one of the sentinel categories below; the three fetch categories map one to one onto the
// RFC 8460 result types a TLS report uses:
//
//	ErrFetch         sts-policy-fetch-error  (DNS, connect, TLS handshake, non-200, redirect, timeout)
//	ErrWebPKI        sts-webpki-invalid      (the policy host's certificate failed verification)
//	ErrPolicyInvalid sts-policy-invalid      (content type, size, syntax)
//
// For RFC 8461 Section 3.3 all three mean the same thing to a sender: no policy could be fetched.
package mtasts

import "errors"

// Error categories. Every error returned by this package wraps one of them; ErrForbiddenAddress only ever
// appears together with ErrFetch.
var (
	// ErrNoRecord: no TXT record starting with "v=STSv1" (the domain has no MTA-STS record).
	ErrNoRecord = errors.New("mtasts: no MTA-STS TXT record")
	// ErrMultipleRecords: more than one candidate record; RFC 8461 Section 3.1 says to act as if there were none.
	ErrMultipleRecords = errors.New("mtasts: more than one MTA-STS TXT record")
	// ErrRecordInvalid: the one candidate record does not follow the ABNF of RFC 8461 Section 3.1.
	ErrRecordInvalid = errors.New("mtasts: invalid MTA-STS TXT record")
	// ErrPolicyInvalid: the policy body or its HTTP framing is invalid (sts-policy-invalid).
	ErrPolicyInvalid = errors.New("mtasts: invalid MTA-STS policy")
	// ErrFetch: the policy could not be retrieved (sts-policy-fetch-error).
	ErrFetch = errors.New("mtasts: policy fetch failed")
	// ErrWebPKI: the policy host's certificate did not verify (sts-webpki-invalid).
	ErrWebPKI = errors.New("mtasts: policy host certificate invalid")
	// ErrForbiddenAddress: a CheckAddr function (see PublicOnly) refused to dial an address. A fetch that
	// fails for this reason wraps both ErrFetch and ErrForbiddenAddress.
	ErrForbiddenAddress = errors.New("mtasts: address not allowed")
)
