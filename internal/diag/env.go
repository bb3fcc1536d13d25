package diag

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/mxgate/mxgate/internal/dnsx"
)

// Defaults for the zero fields of Env.
const (
	DefaultTimeout  = 30 * time.Second
	DefaultPort     = 25
	DefaultHostname = "localhost"
)

// ErrEnv is wrapped by the errors LookupSTS and TestMX return for an Env they cannot work with.
var ErrEnv = errors.New("diag: incomplete environment")

// Env is the outside world a diagnostic talks to. Resolver and HTTP are required; the other fields have
// defaults.
type Env struct {
	// Resolver answers the TXT, MX and address lookups.
	Resolver dnsx.Resolver
	// HTTP fetches policies; it should come from mtasts.NewHTTPClient, whose transport's dialer and roots
	// are also used to show the policy host's certificate.
	HTTP *http.Client
	// Roots verify MX certificates; nil means the system pool.
	Roots *x509.CertPool
	// Port is the SMTP port of MX hosts; 0 means DefaultPort (25).
	Port int
	// Hostname is sent in EHLO; "" means DefaultHostname.
	Hostname string
	// Dial connects to MX hosts; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock for certificate verification; nil means time.Now. Deadlines always use real time.
	Now func() time.Time
	// Timeout bounds the policy fetch, the policy host probe and each MX session; 0 means DefaultTimeout.
	Timeout time.Duration
}

func (e *Env) check() error {
	var errs []error
	if e.Resolver == nil {
		errs = append(errs, fmt.Errorf("%w: no Resolver", ErrEnv))
	}
	if e.HTTP == nil {
		errs = append(errs, fmt.Errorf("%w: no HTTP client", ErrEnv))
	}
	return errors.Join(errs...)
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Env) timeout() time.Duration {
	if e.Timeout > 0 {
		return e.Timeout
	}
	return DefaultTimeout
}

func (e *Env) port() int {
	if e.Port > 0 {
		return e.Port
	}
	return DefaultPort
}

func (e *Env) hostname() string {
	if e.Hostname != "" {
		return e.Hostname
	}
	return DefaultHostname
}

func (e *Env) dial(ctx context.Context, addr string) (net.Conn, error) {
	if e.Dial != nil {
		return e.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
