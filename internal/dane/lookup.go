package dane

import (
	"context"
	"errors"
	"fmt"

	"github.com/mxgate/mxgate/internal/dnsx"
)

// Status is what a TLSA lookup found for one server (RFC 7672 Section 2.1.2 and 2.2).
type Status string

const (
	// StatusNone: DANE does not apply: no TLSA records (secure or insecure denial, DANE-5), or the address
	// records are insecure so TLSA is not asked (DANE-8).
	StatusNone Status = "none"
	// StatusSecure: a secure, non-empty TLSA RRset; TLS is required (and authentication, if a record is usable).
	StatusSecure Status = "secure"
	// StatusInsecure: TLSA records exist but are not DNSSEC-secure; DANE does not apply (DANE-13).
	StatusInsecure Status = "insecure"
	// StatusBogus: the validating resolver found the TLSA answer bogus (report dnssec-invalid); the server is
	// unusable (DANE-4).
	StatusBogus Status = "bogus"
	// StatusFailed: the TLSA lookup failed (SERVFAIL, timeout, malformed); the server is unusable (DANE-4).
	StatusFailed Status = "failed"
)

// LookupRequest names the server whose TLSA records are wanted.
type LookupRequest struct {
	// Host is the MX exchange name (or smart host name) as published, not CNAME-expanded.
	Host string
	// Port is the SMTP port the server is reached on (25 for MX hosts): RFC 7672 Section 2.2.3.
	Port int
	// Addr is the Result of the host's address lookup: whether it was secure, and the CNAMEs it followed.
	Addr dnsx.Result
}

// TLSASet is the outcome of Lookup.
type TLSASet struct {
	Status Status
	// BaseDomain is the TLSA base domain the records were found at (RFC 7672 Section 2.2.3); it is also the
	// SNI name and the first reference identifier. Empty unless Status is secure or insecure.
	BaseDomain string
	// RRset is the TLSA RRset found at BaseDomain.
	RRset []dnsx.TLSA
	// Err is the lookup failure for StatusBogus and StatusFailed.
	Err error
}

// Usable reports whether a secure RRset holds at least one usable record (RFC 7672 Section 2.2: TLS must
// then be authenticated; with none, TLS is required but not authenticated).
func (s TLSASet) Usable() bool {
	return s.Status == StatusSecure && len(Agile(s.RRset)) > 0
}

// QueryName is the TLSA owner name for a base domain and port, "_25._tcp.mx.example.com" (RFC 7672 Section
// 2.2.3, RFC 6698 Section 3).
func QueryName(base string, port int) string {
	return fmt.Sprintf("_%d._tcp.%s", port, base)
}

// Candidates are the TLSA base domains to try for host, in order (RFC 7672 Section 2.2.2): with a secure
// CNAME expansion of the host's address records, first the fully expanded name, then the host's own name;
// otherwise only its own name. Intermediate names of the chain are never candidates.
func Candidates(host string, addr dnsx.Result) []string {
	if addr.Secure && len(addr.CNAMEs) > 0 {
		if last := addr.CNAMEs[len(addr.CNAMEs)-1]; last != host {
			return []string{last, host}
		}
	}
	return []string{host}
}

// Lookup finds the TLSA RRset of a server whose addresses were already looked up (RFC 7672 Section 2.2.2:
// address records first). With insecure address records no TLSA query is sent (DANE-8).
func Lookup(ctx context.Context, r dnsx.Resolver, req LookupRequest) TLSASet {
	if !req.Addr.Secure {
		return TLSASet{Status: StatusNone}
	}
	port := req.Port
	if port == 0 {
		port = 25
	}
	insecure := TLSASet{Status: StatusNone}
	for _, base := range Candidates(req.Host, req.Addr) {
		name := QueryName(base, port)
		rrset, res, err := r.LookupTLSA(ctx, name)
		switch {
		case errors.Is(err, dnsx.ErrBogus):
			return TLSASet{Status: StatusBogus, BaseDomain: base, Err: fmt.Errorf("TLSA %s: %w", name, err)}
		case errors.Is(err, dnsx.ErrNotFound):
			// RFC 7672 Section 2.1.1 (DANE-5): non-existence is not an error; try the next candidate.
			continue
		case err != nil:
			// RFC 7672 Section 2.1.2 (DANE-4): any other failure makes the server unusable.
			return TLSASet{Status: StatusFailed, BaseDomain: base, Err: fmt.Errorf("TLSA %s: %w", name, err)}
		case len(rrset) == 0:
			continue
		case !res.Secure:
			// RFC 7672 Section 2.2 (DANE-13): insecure TLSA records are ignored.
			if insecure.Status == StatusNone {
				insecure = TLSASet{Status: StatusInsecure, BaseDomain: base, RRset: rrset}
			}
			continue
		}
		return TLSASet{Status: StatusSecure, BaseDomain: base, RRset: rrset}
	}
	return insecure
}
