package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/neterr"
)

// Defaults for Fetcher, the values suggested by RFC 8461 Section 3.3.
const (
	DefaultMaxBody = 64 << 10
	DefaultTimeout = time.Minute
)

// Fetcher fetches policies over HTTPS (RFC 8461 Section 3.3).
type Fetcher struct {
	// Client makes the request, normally from NewHTTPClient. Fetch never follows redirects even if the
	// client would.
	Client *http.Client
	// MaxBody is the largest accepted body in bytes; 0 means DefaultMaxBody.
	MaxBody int64
	// Timeout bounds the whole fetch, body included; 0 means DefaultTimeout.
	Timeout time.Duration
}

// PolicyURL returns the policy URL for a policy domain (RFC 8461 Section 3.2), always built from the
// A-label form.
func PolicyURL(domain address.Domain) string {
	return "https://mta-sts." + domain.String() + "/.well-known/mta-sts.txt"
}

// Fetch fetches and parses the policy of domain. It returns the parsed policy and the body as received.
// When the body was read but is invalid, the body is returned with the error, for diagnostics.
//
// Errors wrap ErrFetch, ErrWebPKI or ErrPolicyInvalid (see the package documentation).
func (f *Fetcher) Fetch(ctx context.Context, domain address.Domain) (*Policy, []byte, error) {
	if f.Client == nil {
		return nil, nil, fmt.Errorf("%w: Fetcher has no HTTP client", ErrFetch)
	}
	if domain.IsZero() {
		return nil, nil, fmt.Errorf("%w: empty policy domain", ErrFetch)
	}
	maxBody := f.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	// RFC 8461 Section 3.3: senders may time out the fetch; the deadline covers connect, TLS, headers and
	// body, so a host that trickles bytes cannot hold a delivery.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	url := PolicyURL(domain)
	// RFC 8461 Section 3.3: a plain GET; nothing from an HTTP cache and no conditional headers (the
	// standard client adds none), so a 304 can only be a server error.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: GET %s: %w", ErrFetch, url, err)
	}
	client := *f.Client
	client.Jar = nil
	// RFC 8461 Section 3.3: HTTP 3xx redirects MUST NOT be followed.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, classifyTransportError(url, err)
	}
	defer resp.Body.Close()

	// Spec: only 200 yields a policy (STS-28); 3xx (not followed), 304 and every other status are fetch
	// errors.
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: GET %s: HTTP status %d", ErrFetch, url, resp.StatusCode)
	}
	// RFC 8461 Section 3.2: the media type is "text/plain"; parameters (charset included) are ignored.
	// Spec: STS-31: a missing or different media type makes the policy invalid (sts-policy-invalid).
	ct := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if (err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter)) || !strings.EqualFold(mt, "text/plain") {
		return nil, nil, fmt.Errorf("%w: GET %s: Content-Type %q is not text/plain", ErrPolicyInvalid, url, ct)
	}
	// RFC 8461 Section 3.3: senders may limit the body size. Read one byte more than allowed so that an
	// oversize body is refused, never silently truncated.
	// Spec: STS-32: an oversize body is reported as sts-policy-invalid (the body is what is wrong).
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, classifyTransportError(url+": reading body", err)
	}
	if err := ctx.Err(); err != nil {
		// The deadline passed while the body arrived: whatever was read may be a prefix of the policy (fewer
		// mx lines), so it is never parsed.
		return nil, nil, fmt.Errorf("%w: GET %s: reading body: %w", ErrFetch, url, err)
	}
	if int64(len(body)) > maxBody {
		return nil, nil, fmt.Errorf("%w: GET %s: body larger than %d bytes", ErrPolicyInvalid, url, maxBody)
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, body, fmt.Errorf("GET %s: %w", url, err)
	}
	return p, body, nil
}

// classifyTransportError separates certificate failures (sts-webpki-invalid) from every other transport
// failure (sts-policy-fetch-error). The text is the category, "GET <what>" and the cause in plain words
// (neterr): the certificate by subject and issuer, or the socket failure without net/http's repetition of
// the URL and the socket addresses. The returned error still wraps err.
func classifyTransportError(what string, err error) error {
	// RFC 8461 Section 3.3: the policy host's certificate must chain to a trusted root, be valid now and
	// carry a DNS-ID for the policy host; crypto/tls checks this (SAN only, no CN fallback).
	var (
		cve  *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
		sie  x509.SystemRootsError
		cpe  x509.ConstraintViolationError
		uace x509.UnhandledCriticalExtension
	)
	switch {
	case errors.As(err, &cve), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci),
		errors.As(err, &sie), errors.As(err, &cpe), errors.As(err, &uace):
		cause, ok := neterr.CertificateProblem(err)
		if !ok {
			cause = neterr.Text(err)
		}
		return &describedError{msg: fmt.Sprintf("%v: GET %s: %s", ErrWebPKI, what, cause), errs: []error{ErrWebPKI, err}}
	}
	return &describedError{msg: fmt.Sprintf("%v: GET %s: %s", ErrFetch, what, neterr.Text(err)), errs: []error{ErrFetch, err}}
}

// describedError is an error whose text is written for people and which still wraps its category and
// cause for errors.Is and errors.As.
type describedError struct {
	msg  string
	errs []error
}

func (e *describedError) Error() string   { return e.msg }
func (e *describedError) Unwrap() []error { return e.errs }
