// Package neterr implements the text an administrator reads for a failed connection, read or TLS
// handshake: the cause ("connection refused", "timeout waiting for the server", "connection closed by the
// server", `the server sent TLS alert "handshake failure"`), without the operation and socket addresses Go's
// errors carry ("dial tcp 192.0.2.1:25: connect: ", "read tcp 10.0.0.1:5123->192.0.2.1:25: "). The caller
// names the host and address once, in its own words; this package deliberately says nothing about them.
// Certificates are named by subject and issuer (Certificate, CertificateProblem).
package neterr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// Text describes err for people: its cause when it is a network or TLS failure, err.Error() otherwise.
func Text(err error) string {
	if err == nil {
		return ""
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		// crypto/tls reports an alert the peer sent as an OpError "remote error" around the alert.
		return fmt.Sprintf("the server sent TLS alert %q", strings.TrimPrefix(op.Err.Error(), "tls: "))
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return fmt.Sprintf("TLS alert %q", strings.TrimPrefix(alert.Error(), "tls: "))
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout waiting for the server"
	case errors.Is(err, context.Canceled):
		return "cancelled (shutting down)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset by the server"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no usable local address for the connection"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed by the server"
	}
	if op != nil && op.Err != nil {
		// Some other socket error: its cause, without "dial tcp a:b:" or "read tcp a->b:".
		var sc *net.OpError
		inner := op.Err
		if errors.As(inner, &sc) {
			inner = sc.Err
		}
		return strings.TrimPrefix(inner.Error(), "connect: ")
	}
	return err.Error()
}

// Certificate names a certificate for people reading an error: its subject (the common name, else the first
// DNS name) and its issuer, as in `"mx.example.com" (issuer "R11")`.
func Certificate(c *x509.Certificate) string {
	subject := c.Subject.CommonName
	if subject == "" && len(c.DNSNames) > 0 {
		subject = c.DNSNames[0]
	}
	if subject == "" {
		subject = c.Subject.String()
	}
	issuer := c.Issuer.CommonName
	if issuer == "" {
		issuer = c.Issuer.String()
	}
	return fmt.Sprintf("%q (issuer %q)", subject, issuer)
}

// CertificateProblem describes a failed verification of a server's certificate chain by crypto/tls:
// the certificate by Certificate, then what is wrong with it. ok is false when err is no such failure.
func CertificateProblem(err error) (text string, ok bool) {
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) || len(cve.UnverifiedCertificates) == 0 {
		return "", false
	}
	leaf := cve.UnverifiedCertificates[0]
	name := "certificate " + Certificate(leaf)
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		inv x509.CertificateInvalidError
	)
	switch {
	case errors.As(cve.Err, &ua):
		return name + " is signed by an authority not in the trust store", true
	case errors.As(cve.Err, &he):
		names := append([]string(nil), leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		return fmt.Sprintf("%s names %v, not %s", name, names, he.Host), true
	case errors.As(cve.Err, &inv) && inv.Reason == x509.Expired && inv.Cert == leaf && strings.Contains(inv.Detail, " is after "):
		return name + " expired at " + leaf.NotAfter.UTC().Format(time.RFC3339), true
	case errors.As(cve.Err, &inv) && inv.Reason == x509.Expired && inv.Cert == leaf && strings.Contains(inv.Detail, " is before "):
		return name + " is not valid before " + leaf.NotBefore.UTC().Format(time.RFC3339), true
	}
	return name + ": " + strings.TrimPrefix(cve.Err.Error(), "x509: "), true
}
