package diag

import (
	"crypto/tls"
	"crypto/x509"
	"time"

	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// VerdictValid is the certificate verdict when verification found nothing wrong; any other verdict is an
// RFC 8460 result type.
const VerdictValid = "valid"

// Validity of one certificate at the time of the diagnosis.
const (
	ValidityValid       = "valid"
	ValidityExpired     = "expired"
	ValidityNotYetValid = "not-yet-valid"
)

// CertInfo describes one certificate of a peer's chain.
type CertInfo struct {
	Subject   string    `json:"subject"`
	SANs      []string  `json:"sans,omitempty"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Validity is ValidityValid, ValidityExpired or ValidityNotYetValid at the time of the diagnosis.
	Validity string `json:"validity"`
}

// TLSInfo describes a completed TLS handshake.
type TLSInfo struct {
	Version    string `json:"version"`
	Cipher     string `json:"cipher"`
	ServerName string `json:"server_name"` // the SNI sent
	// Chain is the chain as the peer sent it, leaf first.
	Chain []CertInfo `json:"chain"`
	// Verdict is tlspolicy.VerifyCertificate's result for ServerName: VerdictValid or an RFC 8460 result
	// type; ReasonCode and Detail explain a failure.
	Verdict    string `json:"verdict"`
	ReasonCode string `json:"reason_code,omitempty"`
	Detail     string `json:"detail,omitempty"`
	// Extensions are the EHLO keywords offered after STARTTLS (MX hosts only); EHLOError says why they
	// could not be read.
	Extensions []string `json:"extensions_after_tls,omitempty"`
	EHLOError  string   `json:"ehlo_error,omitempty"`
}

// describeTLS fills a TLSInfo from a handshake with host, verifying the chain with roots at now.
func describeTLS(host string, cs tls.ConnectionState, roots *x509.CertPool, now time.Time) *TLSInfo {
	info := &TLSInfo{
		Version:    tls.VersionName(cs.Version),
		Cipher:     tls.CipherSuiteName(cs.CipherSuite),
		ServerName: host,
	}
	for _, c := range cs.PeerCertificates {
		info.Chain = append(info.Chain, certInfo(c, now))
	}
	// The same check delivery applies after STARTTLS (RFC 8461 Section 4.2), with its RFC 8460 naming.
	failure, reason, detail := tlspolicy.VerifyCertificate(host, cs, roots, now)
	info.Verdict, info.ReasonCode, info.Detail = VerdictValid, reason, detail
	if failure != "" {
		info.Verdict = string(failure)
	}
	return info
}

func certInfo(c *x509.Certificate, now time.Time) CertInfo {
	ci := CertInfo{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		Validity:  ValidityValid,
	}
	ci.SANs = append(ci.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		ci.SANs = append(ci.SANs, ip.String())
	}
	switch {
	case now.After(c.NotAfter):
		ci.Validity = ValidityExpired
	case now.Before(c.NotBefore):
		ci.Validity = ValidityNotYetValid
	}
	return ci
}
