package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/config"
)

// Reload is what a reload changed, and what it could not.
type Reload struct {
	// Reloaded describes each change now in force ("log.level: info -> debug").
	Reloaded []string
	// NeedRestart names the keys of the bootstrap file that changed and take effect only at the next start.
	NeedRestart []string
	// Failed describes what could not be reloaded; the value in use is kept.
	Failed []string
}

// Reload applies what can change without a restart from a newly loaded bootstrap file: the log level (when
// Options.LogLevel is set), the SMTP TLS certificate and key (read again even when their paths are the
// same: a renewed certificate is the common case) and tls.ca_file (unless Options.Roots replaced the trust
// store). Every other key that differs is reported as needing a restart. Nothing is reloaded halfway: a
// certificate or CA file that does not load leaves the one in use.
func (d *Daemon) Reload(next *config.Config) Reload {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	var r Reload
	cur := d.cfg
	if d.level == "" {
		d.level = levelName(cur.Log.Level)
	}
	if lvl := levelName(next.Log.Level); lvl != d.level {
		if d.logLevel != nil {
			d.logLevel.Set(next.Log.SlogLevel())
			r.Reloaded = append(r.Reloaded, fmt.Sprintf("log.level: %s -> %s", d.level, lvl))
			d.level = lvl
		} else {
			r.NeedRestart = append(r.NeedRestart, "log.level")
		}
	}
	switch {
	case next.SMTP.StartTLS() != cur.SMTP.StartTLS():
		// Turning STARTTLS on or off changes what EHLO offers: a new listener.
		r.NeedRestart = append(r.NeedRestart, "smtp.tls_cert_file", "smtp.tls_key_file")
	case next.SMTP.StartTLS():
		cert, err := loadCert(next.SMTP.TLSCertFile, next.SMTP.TLSKeyFile)
		if err != nil {
			r.Failed = append(r.Failed, fmt.Sprintf("smtp.tls_cert_file: %v (keeping the certificate in use)", err))
		} else {
			d.cert.Store(cert)
			r.Reloaded = append(r.Reloaded, "smtp.tls_cert_file: "+describeCert(cert))
		}
	}
	if d.fixedRoots {
		if next.TLS.CAFile != cur.TLS.CAFile {
			r.NeedRestart = append(r.NeedRestart, "tls.ca_file")
		}
	} else {
		// Only the CA file changes: the rest of the HTTPS client (port, allowed networks) stays as started.
		withCA := *cur
		withCA.TLS.CAFile = next.TLS.CAFile
		out, err := NewOutbound(&withCA, nil, d.out.Resolver)
		if err != nil {
			r.Failed = append(r.Failed, fmt.Sprintf("%v (keeping the trust store in use)", err))
		} else {
			d.roots.Store(out.Roots)
			d.https.set(out.HTTP.Transport)
			if next.TLS.CAFile == "" {
				r.Reloaded = append(r.Reloaded, "tls.ca_file: none, the system roots only")
			} else {
				r.Reloaded = append(r.Reloaded, "tls.ca_file: "+next.TLS.CAFile)
			}
		}
	}
	// The keys needing a restart are computed against the start-up configuration (d.cfg, never
	// replaced), on purpose: a key changed in the file and reloaded twice is still reported until the restart
	// that applies it, and one changed back is no longer reported.
	r.NeedRestart = append(r.NeedRestart, changedKeys(cur, next)...)
	return r
}

func levelName(l string) string {
	if l == "" {
		return "info"
	}
	return l
}

// changedKeys names the keys of the bootstrap file that differ between a and b, other than those Reload
// applies. The [settings] and [[domain]] tables only seed the first generation: they never need a restart
// and are not reported.
func changedKeys(a, b *config.Config) []string {
	var out []string
	skip := map[string]bool{"log.level": true, "smtp.tls_cert_file": true, "smtp.tls_key_file": true, "tls.ca_file": true, "settings": true, "domain": true}
	va, vb := reflect.ValueOf(*a), reflect.ValueOf(*b)
	t := va.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := tomlName(f)
		if skip[name] {
			continue
		}
		fa, fb := va.Field(i), vb.Field(i)
		if f.Type.Kind() != reflect.Struct {
			if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
				out = append(out, name)
			}
			continue
		}
		for j := range f.Type.NumField() {
			sub := name + "." + tomlName(f.Type.Field(j))
			if skip[sub] {
				continue
			}
			if !reflect.DeepEqual(fa.Field(j).Interface(), fb.Field(j).Interface()) {
				out = append(out, sub)
			}
		}
	}
	return out
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func loadCert(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// describeCert names a certificate for the log: its subject, names and expiry.
func describeCert(c *tls.Certificate) string {
	if c.Leaf == nil {
		return "loaded"
	}
	return fmt.Sprintf("subject %q, names %s, expires %s", c.Leaf.Subject.String(), strings.Join(c.Leaf.DNSNames, ","), c.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// swapTransport is the HTTPS transport of MTA-STS fetches and TLS report uploads, replaced when tls.ca_file
// is reloaded. Requests in progress finish on the transport they started with.
type swapTransport struct {
	p atomic.Pointer[http.RoundTripper]
}

// set puts rt in use and closes the idle keep-alive connections of the transport it replaces: they were
// verified against the old trust store, and nothing would use or close them again until the server does.
// Connections serving a request stay open until it ends.
func (s *swapTransport) set(rt http.RoundTripper) {
	old := s.p.Swap(&rt)
	if old == nil {
		return
	}
	if c, ok := (*old).(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (s *swapTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return (*s.p.Load()).RoundTrip(req)
}
