package queue

import (
	"context"
	"io"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Envelope is what the SMTP server hands to Submit: the SMTP envelope and its DSN (RFC 3461) and REQUIRETLS
// (RFC 8689) parameters, already syntax-checked.
type Envelope struct {
	// From is the reverse path; the null path <> for bounces and reports.
	From       address.Path
	Recipients []Recipient
	// EnvID is the RFC 3461 ENVID, xtext-decoded; "" when not given.
	EnvID string
	// Ret is "FULL", "HDRS" or "" (not given).
	Ret string
	// RequireTLS is set by MAIL FROM ... REQUIRETLS (RFC 8689 Section 4.1).
	RequireTLS bool
	// TLSOptional is set when the message carries "TLS-Required: No" and RequireTLS is not set
	// (RFC 8689 Section 4.1).
	TLSOptional bool
	// SMTPUTF8 and EightBit record the MAIL parameters so they are passed on.
	SMTPUTF8 bool
	EightBit bool
	// ClientIP is the address the message came from, for logs.
	ClientIP string
	// Report marks a message mxgate itself generated as a TLS report: its deliveries are never recorded for
	// TLS reporting (RFC 8460 Section 3), and its bounces go to the configured report bounce address.
	Report bool
	// DSN marks a message mxgate generated as a delivery status notification.
	DSN bool
}

// Recipient is one RCPT TO with its RFC 3461 parameters.
type Recipient struct {
	// Addr is the recipient address (domain in A-label form, local part as received).
	Addr address.Address
	// Notify is the NOTIFY list (SUCCESS, FAILURE, DELAY, NEVER), upper case; nil when not given.
	Notify []string
	// ORcpt is the ORCPT value as received ("rfc822;bob@example.com"), xtext-decoded; "" when not given.
	ORcpt string
}

// Outcome is the classified result of one delivery attempt for one recipient.
type Outcome string

const (
	Delivered Outcome = "delivered"
	Deferred  Outcome = "deferred"
	Failed    Outcome = "failed"
)

// Deliverer makes one delivery attempt for a batch of messages to one destination. The queue knows delivery
// only through this interface.
type Deliverer interface {
	// Deliver returns one Result per (message, recipient) in the batch. A recipient with no result is
	// treated as deferred.
	Deliver(ctx context.Context, b Batch) []Result
}

// Batch is the due work for one recipient domain (or one static route), delivered over as few SMTP sessions
// as possible.
type Batch struct {
	// Domain is the recipients' domain (the next-hop domain for MX routes) or their address literal.
	Domain address.Host
	Jobs   []Job
}

// Job is one message with its recipients in Batch.Domain.
type Job struct {
	MsgID      string
	From       address.Path
	Recipients []Recipient
	EnvID      string
	Ret        string
	RequireTLS bool
	// TLSOptional: "TLS-Required: No" (RFC 8689 Section 4.2.2): recipient TLS policies are ignored.
	TLSOptional bool
	SMTPUTF8    bool
	EightBit    bool
	Size        int64
	// Attempt counts attempts for this message so far, starting at 1 for the first.
	Attempt int
	// Received is when the message was accepted; Expires is when deferral turns into failure.
	Received time.Time
	Expires  time.Time
	// Report marks TLS report mail, never recorded for TLS reporting.
	Report bool
	// Open returns the message body (header and content, CRLF line endings) from the spool. Reading it
	// fails (before io.EOF) if the body no longer matches the checksum taken when it was accepted.
	Open func() (io.ReadCloser, error)
	// Settled, when set, is called by the Deliverer with each recipient's result as soon as it is known
	// (the reply to DATA, or to RCPT), before Deliver returns: the queue records a message as soon as all
	// its recipients have one, which keeps the window for a duplicate after a crash short. Deliver still
	// returns every result.
	Settled func(Result)
}

// Result is the outcome of one attempt for one recipient.
type Result struct {
	MsgID   string
	Rcpt    address.Address
	Outcome Outcome
	// Code and Enhanced are the SMTP reply ("550", "5.1.1") or the local equivalent; Text is the reply text
	// or the local error.
	Code     int
	Enhanced string
	Text     string
	// RemoteMTA is the MX host name the reply came from ("" when no host answered).
	RemoteMTA string
	// ResultType is the RFC 8460 result type of a TLS or policy failure, "" otherwise.
	ResultType tlsrpt.ResultType
	// TLS describes the session's transport: "none", "unverified" or "verified", with the version
	// ("verified TLS1.3"); "" when no session was made.
	TLS string
	// Policy names the policy applied ("mta-sts enforce", "required-verify", "opportunistic", ...);
	// PolicySource says where it came from (mta-sts, rule, route, default, tls-required-no); STSMode and
	// STSID describe the MTA-STS policy seen. IP is the address connected to. For the delivery log event.
	Policy       string
	PolicySource tlspolicy.Source
	STSMode      mtasts.Mode
	STSID        string
	IP           string
	// NextHopDSN reports, for a delivered recipient, that the next hop advertised DSN (RFC 3461), so the
	// NOTIFY and ORCPT parameters went on with the message and success notices are now its business.
	NextHopDSN bool
}
