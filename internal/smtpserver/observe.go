package smtpserver

import (
	"errors"
	"time"

	"github.com/emersion/go-smtp"
)

// Reason says why intake refused a connection, a command or a message. Its values are a closed set (Reasons),
// so that a metric can start each at zero.
type Reason string

const (
	ReasonRelayDenied   Reason = "relay-denied"   // recipient from a client neither in relay_networks nor authenticated
	ReasonAuthFailed    Reason = "auth-failed"    // wrong user name or password
	ReasonAuthRequired  Reason = "auth-needs-tls" // AUTH before STARTTLS, or too many failures from the address
	ReasonRateLimited   Reason = "rate-limited"   // messages per minute from one address
	ReasonTooManyConns  Reason = "too-many-connections"
	ReasonTooLarge      Reason = "too-large" // SIZE or header section limit
	ReasonTooManyRcpts  Reason = "too-many-recipients"
	ReasonBadAddress    Reason = "bad-address"       // unparsable sender or recipient, address literal
	ReasonNeedsSMTPUTF8 Reason = "needs-smtputf8"    // non-ASCII address without SMTPUTF8
	ReasonRequireTLS    Reason = "requiretls-no-tls" // REQUIRETLS outside TLS (RFC 8689 Section 4.1)
	ReasonBadSequence   Reason = "bad-sequence"      // RCPT before MAIL, DATA without recipients, nested MAIL
	ReasonBadSyntax     Reason = "bad-syntax"        // bad parameter, line too long
	ReasonBadMessage    Reason = "bad-message"       // bare CR or LF, several TLS-Required fields
	ReasonStorage       Reason = "storage-error"     // the message could not be stored (disk full, I/O error)
	ReasonShuttingDown  Reason = "shutting-down"
	ReasonOther         Reason = "other"
)

// Reasons lists every Reason.
var Reasons = []Reason{ReasonRelayDenied, ReasonAuthFailed, ReasonAuthRequired, ReasonRateLimited, ReasonTooManyConns,
	ReasonTooLarge, ReasonBadAddress, ReasonNeedsSMTPUTF8, ReasonRequireTLS, ReasonBadSequence,
	ReasonBadSyntax, ReasonBadMessage, ReasonStorage, ReasonShuttingDown, ReasonOther}

// Accepted describes one message intake acknowledged with 250.
type Accepted struct {
	// Authenticated is true when the client had authenticated (false: it relayed from relay_networks).
	Authenticated bool
	// Commit is the time from the end of the client's data (the final dot) to the 250 reply: the spool
	// write's fsync and the queue commit the client waits for.
	Commit time.Duration
}

// Observer receives intake outcomes, for metrics. Either field may be nil.
type Observer struct {
	Accepted func(Accepted)
	Rejected func(Reason)
}

func (s *Server) rejected(r Reason) {
	if s.cfg.Observer.Rejected != nil {
		s.cfg.Observer.Rejected(r)
	}
}

// observe counts a refusal returned by a session method and returns err unchanged.
func (s *Server) observe(err error) error {
	if err == nil || errors.Is(err, smtp.ErrDataReset) {
		return err
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code < 400 {
		return err // the 250 of Data
	}
	s.rejected(rejectReason(err))
	return err
}

// rejectReason classifies a reply by its enhanced status code (RFC 3463), which each refusal sets precisely.
func rejectReason(err error) Reason {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return ReasonOther
	}
	switch e := se.EnhancedCode; {
	case e == smtp.EnhancedCode{5, 7, 1}:
		return ReasonRelayDenied
	case e == smtp.EnhancedCode{4, 7, 1}:
		return ReasonRateLimited
	case e == smtp.EnhancedCode{5, 7, 10}:
		return ReasonRequireTLS
	case e == smtp.EnhancedCode{5, 7, 0}, e == smtp.EnhancedCode{5, 7, 11}, e == smtp.EnhancedCode{4, 7, 0}:
		return ReasonAuthRequired
	case e == smtp.EnhancedCode{4, 3, 2}:
		return ReasonShuttingDown
	case e == smtp.EnhancedCode{4, 3, 0}, e == smtp.EnhancedCode{4, 3, 1}:
		return ReasonStorage
	case e == smtp.EnhancedCode{5, 3, 4}:
		return ReasonTooLarge
	case e == smtp.EnhancedCode{5, 6, 7}:
		return ReasonNeedsSMTPUTF8
	case e[0] == 5 && e[1] == 1:
		return ReasonBadAddress
	case e == smtp.EnhancedCode{5, 5, 1}:
		return ReasonBadSequence
	case e == smtp.EnhancedCode{5, 5, 2}, e == smtp.EnhancedCode{5, 5, 4}:
		return ReasonBadSyntax
	case e == smtp.EnhancedCode{5, 6, 0}:
		return ReasonBadMessage
	}
	return ReasonOther
}
