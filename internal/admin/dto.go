package admin

import (
	"time"

	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
)

// The types below are the API's wire format, shared by the server and Client. Names are snake_case, times
// are RFC 3339 in UTC and omitted when unknown, durations are whole seconds.

// Message is one entry of GET /api/v1/queue.
type Message struct {
	ID       string    `json:"id"`
	From     string    `json:"from"`
	Size     int64     `json:"size"`
	Received time.Time `json:"received"`
	Expires  time.Time `json:"expires"`
	Attempts int       `json:"attempts"`
	Held     bool      `json:"held"`
	// State is "held", "quarantined" or "queued".
	State string `json:"state"`
	// Recipient counts by state.
	Queued      int      `json:"queued"`
	Delivered   int      `json:"delivered"`
	Failed      int      `json:"failed"`
	Quarantined int      `json:"quarantined"`
	Domains     []string `json:"domains"`
	// NextAttempt is the earliest next attempt of a queued recipient.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	RequireTLS  bool      `json:"require_tls"`
	// Report marks a TLS report the gateway sends; DSN a delivery status notification it generated.
	Report bool `json:"report"`
	DSN    bool `json:"dsn"`
}

// MessageDetail is GET /api/v1/queue/{id}.
type MessageDetail struct {
	Message
	EnvID            string      `json:"envid,omitempty"`
	Ret              string      `json:"ret,omitempty"`
	TLSOptional      bool        `json:"tls_optional"`
	SMTPUTF8         bool        `json:"smtputf8"`
	EightBit         bool        `json:"eight_bit"`
	ClientIP         string      `json:"client_ip,omitempty"`
	QuarantineReason string      `json:"quarantine_reason,omitempty"`
	Recipients       []Recipient `json:"recipients"`
	Timeline         []Attempt   `json:"timeline"`
}

// Recipient is one recipient of a message with its last result.
type Recipient struct {
	Addr           string    `json:"addr"`
	Domain         string    `json:"domain"`
	Notify         []string  `json:"notify,omitempty"`
	ORcpt          string    `json:"orcpt,omitempty"`
	State          string    `json:"state"`
	NextAttempt    time.Time `json:"next_attempt,omitzero"`
	Attempts       int       `json:"attempts"`
	LastCode       int       `json:"last_code,omitempty"`
	LastEnhanced   string    `json:"last_enhanced,omitempty"`
	LastText       string    `json:"last_text,omitempty"`
	LastResultType string    `json:"last_result_type,omitempty"`
	LastRemoteMTA  string    `json:"last_remote_mta,omitempty"`
	LastTLS        string    `json:"last_tls,omitempty"`
	LastPolicy     string    `json:"last_policy,omitempty"`
	Updated        time.Time `json:"updated,omitzero"`
}

// Attempt is one entry of a message's delivery timeline.
type Attempt struct {
	Rcpt       string    `json:"rcpt"`
	At         time.Time `json:"at"`
	Outcome    string    `json:"outcome"`
	Code       int       `json:"code,omitempty"`
	Enhanced   string    `json:"enhanced,omitempty"`
	Text       string    `json:"text,omitempty"`
	RemoteMTA  string    `json:"remote_mta,omitempty"`
	TLS        string    `json:"tls,omitempty"`
	Policy     string    `json:"policy,omitempty"`
	ResultType string    `json:"result_type,omitempty"`
}

// QueueSummary is GET /api/v1/queue/summary.
type QueueSummary struct {
	Messages int `json:"messages"`
	Held     int `json:"held"`
	InFlight int `json:"in_flight"`
	// Oldest is when the oldest message with a queued recipient was received.
	Oldest           time.Time `json:"oldest,omitzero"`
	OldestAgeSeconds int64     `json:"oldest_age_seconds"`
	// RecipientsByState counts recipients of messages still in the queue by state.
	RecipientsByState map[string]int `json:"recipients_by_state"`
	// QueuedByDomain counts queued recipients by domain.
	QueuedByDomain map[string]int `json:"queued_by_domain"`
}

// STSEntry is a cached MTA-STS policy (GET /api/v1/sts/cache and /api/v1/sts/cache/{domain}).
type STSEntry struct {
	// Domain is the policy domain in A-label form; DomainUnicode its U-label form when that differs.
	Domain        string    `json:"domain"`
	DomainUnicode string    `json:"domain_unicode,omitempty"`
	ID            string    `json:"id"`
	Mode          string    `json:"mode"`
	MaxAgeSeconds int64     `json:"max_age_seconds"`
	MX            []string  `json:"mx"`
	Fetched       time.Time `json:"fetched"`
	Expires       time.Time `json:"expires"`
	// Expired is true when the policy is past its expiry at the time of the request, and so not applied.
	Expired             bool      `json:"expired"`
	LastUsed            time.Time `json:"last_used,omitzero"`
	LastError           string    `json:"last_error,omitempty"`
	LastErrorAt         time.Time `json:"last_error_at,omitzero"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	// Policy is the policy text as fetched.
	Policy string `json:"policy"`
}

// ActionResult answers a successful state-changing request.
type ActionResult struct {
	// Action is retry, hold, release, bounce or delete for a message, flush for a cached policy.
	Action string `json:"action"`
	ID     string `json:"id,omitempty"`
	Domain string `json:"domain,omitempty"`
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func messageDTO(mi queue.MessageInfo) Message {
	domains := mi.Domains
	if domains == nil {
		domains = []string{}
	}
	return Message{
		ID:          mi.ID,
		From:        mi.From,
		Size:        mi.Size,
		Received:    utc(mi.Received),
		Expires:     utc(mi.Expires),
		Attempts:    mi.Attempts,
		Held:        mi.Held,
		State:       mi.State,
		Queued:      mi.Queued,
		Delivered:   mi.Delivered,
		Failed:      mi.Failed,
		Quarantined: mi.Quarantined,
		Domains:     domains,
		NextAttempt: utc(mi.NextAttempt),
		LastError:   mi.LastError,
		RequireTLS:  mi.RequireTLS,
		Report:      mi.Report,
		DSN:         mi.DSN,
	}
}

func detailDTO(d queue.MessageDetail) MessageDetail {
	out := MessageDetail{
		Message:          messageDTO(d.MessageInfo),
		EnvID:            d.EnvID,
		Ret:              d.Ret,
		TLSOptional:      d.TLSOptional,
		SMTPUTF8:         d.SMTPUTF8,
		EightBit:         d.EightBit,
		ClientIP:         d.ClientIP,
		QuarantineReason: d.QuarantineReason,
		Recipients:       make([]Recipient, 0, len(d.Rcpts)),
		Timeline:         make([]Attempt, 0, len(d.Timeline)),
	}
	for _, r := range d.Rcpts {
		out.Recipients = append(out.Recipients, Recipient{
			Addr:           r.Addr,
			Domain:         r.Domain,
			Notify:         r.Notify,
			ORcpt:          r.ORcpt,
			State:          r.State,
			NextAttempt:    utc(r.NextAttempt),
			Attempts:       r.Attempts,
			LastCode:       r.LastCode,
			LastEnhanced:   r.LastEnhanced,
			LastText:       r.LastText,
			LastResultType: r.LastResultType,
			LastRemoteMTA:  r.LastRemoteMTA,
			LastTLS:        r.LastTLS,
			LastPolicy:     r.LastPolicy,
			Updated:        utc(r.Updated),
		})
	}
	for _, a := range d.Timeline {
		out.Timeline = append(out.Timeline, Attempt{
			Rcpt:       a.Rcpt,
			At:         utc(a.At),
			Outcome:    string(a.Outcome),
			Code:       a.Code,
			Enhanced:   a.Enhanced,
			Text:       a.Text,
			RemoteMTA:  a.RemoteMTA,
			TLS:        a.TLS,
			Policy:     a.Policy,
			ResultType: a.ResultType,
		})
	}
	return out
}

func summaryDTO(s queue.Summary) QueueSummary {
	out := QueueSummary{
		Messages:          s.Messages,
		Held:              s.Held,
		InFlight:          s.InFlight,
		Oldest:            utc(s.Oldest),
		OldestAgeSeconds:  int64(s.OldestAge / time.Second),
		RecipientsByState: s.RecipientsByState,
		QueuedByDomain:    s.QueuedByDomain,
	}
	if out.RecipientsByState == nil {
		out.RecipientsByState = map[string]int{}
	}
	if out.QueuedByDomain == nil {
		out.QueuedByDomain = map[string]int{}
	}
	return out
}

func stsEntryDTO(e mtastscache.Entry, now time.Time) STSEntry {
	out := STSEntry{
		Domain:              e.Domain.String(),
		ID:                  e.ID,
		Mode:                string(e.Mode),
		MaxAgeSeconds:       int64(e.MaxAge / time.Second),
		MX:                  e.MX,
		Fetched:             utc(e.Fetched),
		Expires:             utc(e.Expires),
		Expired:             e.Expired(now),
		LastUsed:            utc(e.LastUsed),
		LastError:           e.LastError,
		LastErrorAt:         utc(e.LastErrorAt),
		ConsecutiveFailures: e.ConsecutiveFailures,
		Policy:              e.Policy,
	}
	if u := e.Domain.Unicode(); u != out.Domain {
		out.DomainUnicode = u
	}
	if out.MX == nil {
		out.MX = []string{}
	}
	return out
}
