// Package testpki is a certificate authority for tests and the demo: it issues leaf certificates that are
// valid, expired, not yet valid, for the wrong name, wildcard, CN-only, or chained to a root nobody trusts.
//
// Keys are ECDSA P-256 so that issuing is fast. Nothing here is for production use.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// CA is a root certificate authority.
type CA struct {
	Name string
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Now is the reference time for default validity windows; the zero value means time.Now.
	Now    func() time.Time
	serial atomic.Int64
}

// NewCA makes a self-signed root valid from a year before now to ten years after.
func NewCA(name string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"mxgate test PKI"}},
		NotBefore:             t.Add(-365 * 24 * time.Hour),
		NotAfter:              t.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	ca := &CA{Name: name, Cert: cert, Key: key, Now: now}
	ca.serial.Store(1)
	return ca, nil
}

// Pool returns a pool holding only this root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns the root certificate in PEM form (for tls.ca_file).
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Leaf describes a certificate to issue.
type Leaf struct {
	// DNSNames are the SAN dNSName entries; may be empty (for CN-only certificates).
	DNSNames []string
	// IPAddresses are the SAN iPAddress entries.
	IPAddresses []netip.Addr
	// CommonName is the subject CN; empty means none.
	CommonName string
	// NotBefore and NotAfter default to an hour ago and 90 days ahead of CA.Now.
	NotBefore, NotAfter time.Time
}

// Issue issues a leaf certificate signed by the CA and returns it with its key, ready for tls.Config.
func (ca *CA) Issue(l Leaf) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testpki: %w", err)
	}
	now := time.Now
	if ca.Now != nil {
		now = ca.Now
	}
	t := now()
	if l.NotBefore.IsZero() {
		l.NotBefore = t.Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = t.Add(90 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: l.CommonName},
		DNSNames:     l.DNSNames,
		IPAddresses:  ips(l.IPAddresses),
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testpki: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testpki: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func ips(as []netip.Addr) []net.IP {
	var out []net.IP
	for _, a := range as {
		out = append(out, a.AsSlice())
	}
	return out
}

// MustIssue is Issue for tests; it panics on failure, which only a broken crypto library causes.
func (ca *CA) MustIssue(l Leaf) tls.Certificate {
	c, err := ca.Issue(l)
	if err != nil {
		panic(err)
	}
	return c
}

// SelfSigned returns a self-signed certificate for names, chained to nothing.
func SelfSigned(names ...string) (tls.Certificate, error) {
	ca, err := NewCA("self-signed "+fmt.Sprint(names), nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := ca.Issue(Leaf{DNSNames: names})
	if err != nil {
		return tls.Certificate{}, err
	}
	c.Certificate = c.Certificate[:1]
	return c, nil
}
