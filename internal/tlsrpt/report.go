package tlsrpt

import "time"

// Report is the RFC 8460 Section 4.4 aggregate report, with the member names of the JSON schema.
type Report struct {
	OrganizationName string          `json:"organization-name"`
	DateRange        DateRange       `json:"date-range"`
	ContactInfo      string          `json:"contact-info"`
	ReportID         string          `json:"report-id"`
	Policies         []PolicyResults `json:"policies"`
}

// DateRange is the UTC day a report covers (RFC 8460 Section 4.1).
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyResults is one element of "policies": a policy with its session counts and failure details.
type PolicyResults struct {
	Policy         Policy           `json:"policy"`
	Summary        Summary          `json:"summary"`
	FailureDetails []FailureDetails `json:"failure-details,omitempty"`
}

// Policy identifies the policy sessions were evaluated against (RFC 8460 Section 4.4).
type Policy struct {
	Type PolicyType `json:"policy-type"`
	// String holds the policy lines as fetched (sts) or one TLSA RR per element (tlsa); empty for
	// no-policy-found.
	String []string `json:"policy-string"`
	// Domain is the Policy Domain in A-label form (the TLSA base domain for tlsa).
	Domain string `json:"policy-domain"`
	// MXHost holds the policy's mx patterns for sts (an array: RFC 8460 erratum 6241).
	MXHost []string `json:"mx-host,omitempty"`
}

// Summary holds the session counts (RFC 8460 Section 4.2).
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// FailureDetails is one aggregated failure (RFC 8460 Section 4.3 and 4.4).
type FailureDetails struct {
	ResultType          ResultType `json:"result-type"`
	SendingMTAIP        string     `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string     `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHelo     string     `json:"receiving-mx-helo,omitempty"`
	ReceivingIP         string     `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64      `json:"failed-session-count"`
	AdditionalInfo      string     `json:"additional-information,omitempty"`
	FailureReasonCode   string     `json:"failure-reason-code,omitempty"`
}

// Session is the result of one delivery session, recorded against the policy that applied to it.
type Session struct {
	Policy  Policy
	Success bool
	// Failure is set when Success is false.
	Failure *FailureDetails
	At      time.Time
}
