package tlsrpt

// ResultType is an RFC 8460 Section 4.3 result type. mxgate uses these names for every TLS and policy failure,
// in logs, metrics, the queue's last error, the console and the reports.
type ResultType string

// RFC 8460 Section 4.3.1 (negotiation failures), 4.3.2 (policy failures), 4.3.2.1 (DANE) and 4.3.2.2 (MTA-STS).
const (
	ResultSTARTTLSNotSupported    ResultType = "starttls-not-supported"
	ResultCertificateHostMismatch ResultType = "certificate-host-mismatch"
	ResultCertificateExpired      ResultType = "certificate-expired"
	ResultCertificateNotTrusted   ResultType = "certificate-not-trusted"
	ResultValidationFailure       ResultType = "validation-failure"
	ResultTLSAInvalid             ResultType = "tlsa-invalid"
	ResultDNSSECInvalid           ResultType = "dnssec-invalid"
	ResultDANERequired            ResultType = "dane-required"
	ResultSTSPolicyFetchError     ResultType = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid        ResultType = "sts-policy-invalid"
	ResultSTSWebPKIInvalid        ResultType = "sts-webpki-invalid"
)

// PolicyType is the RFC 8460 Section 4.4 policy-type.
type PolicyType string

const (
	PolicyTLSA          PolicyType = "tlsa"
	PolicySTS           PolicyType = "sts"
	PolicyNoPolicyFound PolicyType = "no-policy-found"
)
