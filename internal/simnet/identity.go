package simnet

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync"
)

// tlsIdentity is what a simulated host presents in TLS handshakes: a certificate, per-SNI certificates and
// the TLS versions it allows. Its methods are safe for concurrent use; changes apply from the next
// handshake on. SMTP receivers and HTTPS hosts embed it.
type tlsIdentity struct {
	idMu    sync.Mutex
	cert    *tls.Certificate
	certSNI map[string]*tls.Certificate
	minV    uint16
	maxV    uint16
}

// SetCert changes the certificate presented from the next handshake on; per-SNI certificates still win.
func (t *tlsIdentity) SetCert(c *tls.Certificate) {
	t.idMu.Lock()
	defer t.idMu.Unlock()
	t.cert = c
}

// SetCertForSNI replaces the per-SNI certificates.
func (t *tlsIdentity) SetCertForSNI(m map[string]*tls.Certificate) {
	t.idMu.Lock()
	defer t.idMu.Unlock()
	t.certSNI = m
}

// SetTLSVersions restricts the TLS versions from the next handshake on; zero means Go's default.
func (t *tlsIdentity) SetTLSVersions(minVersion, maxVersion uint16) {
	t.idMu.Lock()
	defer t.idMu.Unlock()
	t.minV, t.maxV = minVersion, maxVersion
}

// config is the server configuration for a handshake asking for serverName.
func (t *tlsIdentity) config(serverName string) *tls.Config {
	t.idMu.Lock()
	defer t.idMu.Unlock()
	cert := t.cert
	if c, ok := t.certSNI[strings.ToLower(serverName)]; ok {
		cert = c
	}
	return &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: t.minV, MaxVersion: t.maxV}
}

// Leaf returns the certificate presented to clients that send no matching SNI, parsed: for publishing the
// TLSA records that match it.
func (t *tlsIdentity) Leaf() *x509.Certificate {
	t.idMu.Lock()
	defer t.idMu.Unlock()
	if t.cert.Leaf != nil {
		return t.cert.Leaf
	}
	c, err := x509.ParseCertificate(t.cert.Certificate[0])
	if err != nil {
		return nil
	}
	return c
}
