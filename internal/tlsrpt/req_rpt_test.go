package tlsrpt

import "testing"

// RFC 8460 Sections 4.3 and 6.6: the registered result types and policy types, spelled exactly.
func TestResultTypeStrings_RPT21(t *testing.T) {
	t.Parallel()
	results := map[ResultType]string{
		ResultSTARTTLSNotSupported:    "starttls-not-supported",
		ResultCertificateHostMismatch: "certificate-host-mismatch",
		ResultCertificateExpired:      "certificate-expired",
		ResultCertificateNotTrusted:   "certificate-not-trusted",
		ResultValidationFailure:       "validation-failure",
		ResultTLSAInvalid:             "tlsa-invalid",
		ResultDNSSECInvalid:           "dnssec-invalid",
		ResultDANERequired:            "dane-required",
		ResultSTSPolicyFetchError:     "sts-policy-fetch-error",
		ResultSTSPolicyInvalid:        "sts-policy-invalid",
		ResultSTSWebPKIInvalid:        "sts-webpki-invalid",
	}
	if len(results) != 11 {
		t.Fatalf("%d distinct result types, want the 11 registered ones", len(results))
	}
	for got, want := range results {
		if string(got) != want {
			t.Errorf("result type %q, want %q", got, want)
		}
	}
	policies := map[PolicyType]string{PolicyTLSA: "tlsa", PolicySTS: "sts", PolicyNoPolicyFound: "no-policy-found"}
	for got, want := range policies {
		if string(got) != want {
			t.Errorf("policy type %q, want %q", got, want)
		}
	}
}
