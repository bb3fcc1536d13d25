package diag

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/mx"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// RecordReport is what DNS holds at _mta-sts.<domain> (RFC 8461 Section 3.1).
type RecordReport struct {
	Name string `json:"name"`
	// TXT are all TXT records at Name, raw (each record's strings concatenated).
	TXT []string `json:"txt"`
	// Selected is the MTA-STS record used and ID its id; both empty when there is none.
	Selected string `json:"selected,omitempty"`
	ID       string `json:"id,omitempty"`
	// Error says why no record is usable; Temporary marks a DNS failure, which is never "no policy".
	Error     string `json:"error,omitempty"`
	Temporary bool   `json:"temporary,omitempty"`
}

// PolicyReport is the outcome of fetching the policy (RFC 8461 Section 3.3).
type PolicyReport struct {
	URL     string `json:"url"`
	Fetched bool   `json:"fetched"`
	// Text is the body as received, also when it is invalid.
	Text   string      `json:"text,omitempty"`
	Mode   mtasts.Mode `json:"mode,omitempty"`
	MaxAge int64       `json:"max_age,omitempty"` // seconds
	MX     []string    `json:"mx,omitempty"`
	// ResultType names a failure (sts-policy-fetch-error, sts-webpki-invalid, sts-policy-invalid) and
	// Error describes it.
	ResultType tlsrpt.ResultType `json:"result_type,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// Coverage says whether a policy's mx patterns match an MX host (RFC 8461 Section 4.1).
type Coverage string

// Coverage values.
const (
	Covered    Coverage = "covered"
	NotCovered Coverage = "not-covered"
	NoPolicy   Coverage = "no-policy"
	// Unknown: the _mta-sts lookup failed temporarily, so whether a policy covers the host is not known.
	Unknown Coverage = "unknown"
)

// MXCoverage is one live MX host and whether the policy covers it.
type MXCoverage struct {
	Host     string   `json:"host"`
	Pref     uint16   `json:"pref"`
	Implicit bool     `json:"implicit,omitempty"`
	Policy   Coverage `json:"policy"`
}

// PolicyHostReport is the policy host's TLS handshake, made separately from the fetch so that the
// certificate can be shown even when it fails verification.
type PolicyHostReport struct {
	Host  string   `json:"host"`
	Error string   `json:"error,omitempty"`
	TLS   *TLSInfo `json:"tls,omitempty"`
}

// STSReport is the result of LookupSTS.
type STSReport struct {
	Domain string        `json:"domain"`
	Record RecordReport  `json:"record"`
	Policy *PolicyReport `json:"policy,omitempty"` // nil when there is no record to fetch a policy for
	// PolicyHost is nil when no fetch was made.
	PolicyHost *PolicyHostReport `json:"policy_host,omitempty"`
	MX         []MXCoverage      `json:"mx"`
	MXError    string            `json:"mx_error,omitempty"`
	// MXTemporary marks an MX lookup that failed temporarily: delivery defers.
	MXTemporary bool `json:"mx_temporary,omitempty"`
	// Cache is the gateway's cached policy for the domain (what delivery applies when the live lookup fails
	// or shows the same id); nil when it was not asked.
	Cache *CacheView `json:"cache,omitempty"`
}

// CacheView is the gateway's policy cache for one domain, as the lookup saw it.
type CacheView struct {
	// Entry is the cached policy, nil when none is cached.
	Entry *CachedPolicy `json:"entry,omitempty"`
	// Error says why the cache could not be read (the gateway is not running, no token, ...).
	Error string `json:"error,omitempty"`
}

// CachedPolicy is one cached policy.
type CachedPolicy struct {
	ID      string      `json:"id"`
	Mode    mtasts.Mode `json:"mode"`
	MX      []string    `json:"mx"`
	Fetched time.Time   `json:"fetched"`
	Expires time.Time   `json:"expires"`
	// Expired: past its expiry when asked, so no longer applied.
	Expired bool `json:"expired"`
}

// usable returns the cached policy delivery would apply, nil when there is none in force.
func (c *CacheView) usable() *CachedPolicy {
	if c == nil || c.Entry == nil || c.Entry.Expired || c.Entry.Mode == mtasts.ModeNone {
		return nil
	}
	return c.Entry
}

// Verdict is a diagnostic's conclusion, for exit codes.
type Verdict int

const (
	// VerdictOK: the answer is complete, and mail can be delivered (or is delivered without a policy).
	VerdictOK Verdict = iota
	// VerdictBlocked: the enforce policy keeps all mail to the domain from being delivered.
	VerdictBlocked
	// VerdictUnknown: a lookup failed temporarily and nothing cached stands in, so delivery would defer;
	// this is never read as "no policy".
	VerdictUnknown
	// VerdictNothingToTest: there was no MX host to test.
	VerdictNothingToTest
)

// Verdict concludes the lookup: blocked, unknown (a temporary DNS failure that delivery would defer on,
// with no usable cached policy), or OK.
func (r *STSReport) Verdict() Verdict {
	switch {
	case r.Blocked():
		return VerdictBlocked
	case r.MXTemporary, r.Record.Temporary && r.Cache.usable() == nil:
		return VerdictUnknown
	}
	return VerdictOK
}

// Blocked reports whether the domain's policy is in enforce mode and covers none of its live MX hosts:
// mail to the domain could then never be delivered (KumoMTA calls this "MTA-STS impossible").
func (r *STSReport) Blocked() bool {
	if r.Policy == nil || r.Policy.Mode != mtasts.ModeEnforce || len(r.MX) == 0 {
		return false
	}
	for _, m := range r.MX {
		if m.Policy == Covered {
			return false
		}
	}
	return true
}

// LookupSTS looks up domain's MTA-STS record, fetches its policy, shows the policy host's certificate and
// checks the domain's live MX hosts against the policy. Lookup and fetch failures are part of the report;
// the error is for an unusable env or a cancelled ctx.
func LookupSTS(ctx context.Context, env Env, domain address.Domain) (STSReport, error) {
	if err := env.check(); err != nil {
		return STSReport{}, err
	}
	if domain.IsZero() {
		return STSReport{}, errors.New("diag: empty domain")
	}
	rep := STSReport{Domain: domain.String()}
	var pol *mtasts.Policy
	rep.Record, rep.Policy, pol = discover(ctx, env, domain)
	if rep.Policy != nil {
		rep.PolicyHost = probePolicyHost(ctx, env, domain)
	}
	hosts, err := resolveMX(ctx, env, domain)
	if err != nil {
		rep.MXError, rep.MXTemporary = err.Error(), !mx.Permanent(err)
	}
	for _, h := range hosts {
		c := coverage(pol, h.Name)
		if rep.Record.Temporary {
			c = Unknown
		}
		rep.MX = append(rep.MX, MXCoverage{Host: h.Name, Pref: h.Pref, Implicit: h.Implicit, Policy: c})
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("diag: lookup %s: %w", domain, err)
	}
	return rep, nil
}

// discover does RFC 8461 policy discovery as the policy cache does, without a cache: the TXT record, then
// (only when there is exactly one valid record) the policy. The parsed policy is nil unless it was fetched
// and valid.
func discover(ctx context.Context, env Env, domain address.Domain) (RecordReport, *PolicyReport, *mtasts.Policy) {
	rec := RecordReport{Name: "_mta-sts." + domain.String(), TXT: []string{}}
	txts, _, err := env.Resolver.LookupTXT(ctx, rec.Name)
	switch {
	case errors.Is(err, dnsx.ErrNotFound):
		rec.Error = "no TXT records: " + err.Error()
		return rec, nil, nil
	case err != nil:
		// Temporary unless proven permanent: a DNS failure is not "no policy".
		rec.Error, rec.Temporary = err.Error(), true
		return rec, nil, nil
	}
	rec.TXT = append(rec.TXT, txts...)
	r, err := mtasts.SelectRecord(txts)
	if err != nil {
		// RFC 8461 Section 3.1: no record, several records or an invalid one all mean no policy, and no
		// fetch.
		rec.Error = err.Error()
		return rec, nil, nil
	}
	rec.ID = r.ID
	for _, t := range txts {
		if _, err := mtasts.SelectRecord([]string{t}); err == nil {
			rec.Selected = t
		}
	}

	f := &mtasts.Fetcher{Client: env.HTTP, Timeout: env.timeout()}
	pr := &PolicyReport{URL: mtasts.PolicyURL(domain)}
	pol, body, err := f.Fetch(ctx, domain)
	pr.Text = string(body)
	if err != nil {
		pr.ResultType, pr.Error = tlspolicy.STSFetchResult(err), err.Error()
		return rec, pr, nil
	}
	pr.Fetched = true
	pr.Mode, pr.MaxAge, pr.MX = pol.Mode, int64(pol.MaxAge.Seconds()), pol.MX
	return rec, pr, pol
}

// resolveMX returns the domain's MX hosts sorted by preference and then name. Delivery shuffles hosts of
// equal preference; a diagnosis lists them in a stable order instead.
func resolveMX(ctx context.Context, env Env, domain address.Domain) ([]mx.Host, error) {
	route, err := mx.Resolve(ctx, env.Resolver, domain, mx.Options{})
	if err != nil {
		return nil, err
	}
	hosts := slices.Clone(route.Hosts)
	slices.SortStableFunc(hosts, func(a, b mx.Host) int {
		return cmp.Or(cmp.Compare(a.Pref, b.Pref), cmp.Compare(a.Name, b.Name))
	})
	return hosts, nil
}

func coverage(pol *mtasts.Policy, host string) Coverage {
	switch {
	case pol == nil || pol.Mode == mtasts.ModeNone:
		return NoPolicy
	case pol.Matches(host):
		return Covered
	default:
		return NotCovered
	}
}

// probePolicyHost makes one TLS handshake with mta-sts.<domain> through the HTTP client's own dialer (so
// with its resolver, port and address checks) and reports the chain it presents, verified with the HTTP
// client's roots. Verification is done after the handshake so that a bad certificate can still be shown.
func probePolicyHost(ctx context.Context, env Env, domain address.Domain) *PolicyHostReport {
	host := "mta-sts." + domain.String()
	rep := &PolicyHostReport{Host: host}
	tr, ok := env.HTTP.Transport.(*http.Transport)
	if !ok || tr.DialContext == nil {
		rep.Error = "not shown: the HTTP client has no dialer to reuse (use mtasts.NewHTTPClient)"
		return rep
	}
	ctx, cancel := context.WithTimeout(ctx, env.timeout())
	defer cancel()
	conn, err := tr.DialContext(ctx, "tcp", net.JoinHostPort(host, "443"))
	if err != nil {
		rep.Error = "connect: " + err.Error()
		return rep
	}
	defer conn.Close()
	cfg := &tls.Config{
		ServerName: host,
		// Verified below with the fetch's roots, so that a failing certificate is still displayed.
		InsecureSkipVerify: true, //nolint:gosec // verified after the handshake
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
	}
	if tr.TLSClientConfig != nil {
		cfg.MinVersion = max(cfg.MinVersion, tr.TLSClientConfig.MinVersion)
	}
	tconn := tls.Client(conn, cfg)
	if err := tconn.HandshakeContext(ctx); err != nil {
		rep.Error = "TLS handshake: " + err.Error()
		return rep
	}
	roots := env.Roots
	if tr.TLSClientConfig != nil {
		// What the fetch trusts; nil means the system pool there and here alike.
		roots = tr.TLSClientConfig.RootCAs
	}
	rep.TLS = describeTLS(host, tconn.ConnectionState(), roots, env.now())
	return rep
}
