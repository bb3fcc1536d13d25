package admin

import (
	"time"

	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlsreport"
	"github.com/mxgate/mxgate/internal/tlsrpt"
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
	Addr           string            `json:"addr"`
	Domain         string            `json:"domain"`
	Notify         []string          `json:"notify,omitempty"`
	ORcpt          string            `json:"orcpt,omitempty"`
	State          string            `json:"state"`
	NextAttempt    time.Time         `json:"next_attempt,omitzero"`
	Attempts       int               `json:"attempts"`
	LastCode       int               `json:"last_code,omitempty"`
	LastEnhanced   string            `json:"last_enhanced,omitempty"`
	LastText       string            `json:"last_text,omitempty"`
	LastResultType tlsrpt.ResultType `json:"last_result_type,omitempty"`
	LastRemoteMTA  string            `json:"last_remote_mta,omitempty"`
	LastTLS        string            `json:"last_tls,omitempty"`
	LastPolicy     string            `json:"last_policy,omitempty"`
	Updated        time.Time         `json:"updated,omitzero"`
}

// Attempt is one entry of a message's delivery timeline.
type Attempt struct {
	Rcpt       string            `json:"rcpt"`
	At         time.Time         `json:"at"`
	Outcome    string            `json:"outcome"`
	Code       int               `json:"code,omitempty"`
	Enhanced   string            `json:"enhanced,omitempty"`
	Text       string            `json:"text,omitempty"`
	RemoteMTA  string            `json:"remote_mta,omitempty"`
	TLS        string            `json:"tls,omitempty"`
	Policy     string            `json:"policy,omitempty"`
	ResultType tlsrpt.ResultType `json:"result_type,omitempty"`
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
	// Action is retry, hold, release, bounce or delete for a message, flush for a cached policy, suppress or
	// unsuppress for a TLS report suppression entry.
	Action string `json:"action"`
	ID     string `json:"id,omitempty"`
	Domain string `json:"domain,omitempty"`
	Entry  string `json:"entry,omitempty"`
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

func recipientDTO(r queue.RecipientInfo) Recipient {
	return Recipient{
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
	}
}

func attemptDTO(a queue.Attempt) Attempt {
	return Attempt{
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
		out.Recipients = append(out.Recipients, recipientDTO(r))
	}
	for _, a := range d.Timeline {
		out.Timeline = append(out.Timeline, attemptDTO(a))
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

// Setting is one entry of GET /api/v1/settings: a setting with its committed value and staged change.
type Setting struct {
	Key string `json:"key"`
	// Kind is bool, int, string or tls-level (per-domain rules "Domain.<domain>.TLS").
	Kind string `json:"kind"`
	// Value is the committed value, or the default when Set is false.
	Value   string `json:"value"`
	Set     bool   `json:"set"`
	Default string `json:"default"`
	Help    string `json:"help,omitempty"`
	// Staged is the change waiting for a commit, if any.
	Staged *SettingChange `json:"staged,omitempty"`
}

// SettingChange is one staged change against the committed settings.
type SettingChange struct {
	Key string `json:"key"`
	// Old is the committed value ("" with OldSet false when the default applies); New likewise, NewSet
	// false meaning the setting is removed.
	Old    string `json:"old"`
	OldSet bool   `json:"old_set"`
	New    string `json:"new"`
	NewSet bool   `json:"new_set"`
	// Default is the setting's default ("" for per-domain rules).
	Default string `json:"default"`
}

// ConfigDiff is GET /api/v1/config/diff (and the answer of apply and discard): the staged changes against
// the committed generation, sorted by key.
type ConfigDiff struct {
	Generation int             `json:"generation"`
	Changes    []SettingChange `json:"changes"`
}

// CommitResult answers a commit or a rollback: the new generation, in force.
type CommitResult struct {
	Generation int `json:"generation"`
	// RollbackOf is the generation a rollback restored.
	RollbackOf int               `json:"rollback_of,omitempty"`
	Values     map[string]string `json:"values"`
	// InForce is true when a rollback found the generation's settings in force already: nothing was
	// committed and Generation is the one in force.
	InForce bool `json:"in_force,omitempty"`
	// Discarded are the staged changes a rollback with discard_staged dropped.
	Discarded []SettingChange `json:"discarded,omitempty"`
}

// Generation is one entry of GET /api/v1/config/history, newest first.
type Generation struct {
	Generation int       `json:"generation"`
	Committed  time.Time `json:"committed"`
	Note       string    `json:"note"`
	Author     string    `json:"author"`
	RollbackOf int       `json:"rollback_of,omitempty"`
	// Values holds the settings set explicitly in this generation; the others have their defaults.
	Values map[string]string `json:"values"`
}

// TLSRPTLookup is GET /api/v1/tlsrpt/lookup/{domain}: the live TLSRPT record (RFC 8460 Section 3).
type TLSRPTLookup struct {
	Domain string `json:"domain"`
	// Name is the TXT owner name, _smtp._tls.<domain>.
	Name string `json:"name"`
	// TXT holds every TXT record at Name, TLSRPT or not.
	TXT []string `json:"txt"`
	// Valid says whether exactly one valid TLSRPT record with a usable rua was found; Error says why not.
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
	// RUA holds the usable destinations ("mailto:addr" or the https URL), in record order.
	RUA []string `json:"rua"`
	// Ignored holds the rua URIs that cannot be used.
	Ignored []string `json:"ignored,omitempty"`
}

// PendingReport is one entry of GET /api/v1/tlsrpt/pending: a Policy Domain's aggregate of one UTC day whose
// report has not been sent.
type PendingReport struct {
	Day        string `json:"day"` // YYYY-MM-DD
	Domain     string `json:"domain"`
	Policies   int    `json:"policies"`
	Successful int64  `json:"successful"`
	Failed     int64  `json:"failed"`
	// ReportID is set once the report has been built (by a preview or a send).
	ReportID string `json:"report_id,omitempty"`
}

// SentReport is one entry of GET /api/v1/tlsrpt/sent: one report to one destination.
type SentReport struct {
	Day         string `json:"day"` // YYYY-MM-DD
	Domain      string `json:"domain"`
	ReportID    string `json:"report_id"`
	Destination string `json:"destination"`
	// Status is the delivery's state: pending, sending, queued (mail handed to the queue), delivered (https),
	// retrying, failed or suppressed.
	Status       string    `json:"status"`
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	NextAttempt  time.Time `json:"next_attempt,omitzero"`
	// MsgID is the queue id of the report mail.
	MsgID     string `json:"msg_id,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// SendResult answers POST /api/v1/tlsrpt/send.
type SendResult struct {
	Day     string             `json:"day"` // YYYY-MM-DD
	Domains []SendDomainResult `json:"domains"`
}

// SendDomainResult is what a send did for one Policy Domain.
type SendDomainResult struct {
	Domain   string `json:"domain"`
	ReportID string `json:"report_id"`
	// Status is sent, no-record, skipped, already-handled or error (see tlsreport.DomainResult).
	Status     string       `json:"status"`
	Detail     string       `json:"detail,omitempty"`
	Deliveries []SentReport `json:"deliveries"`
}

// Suppression is one entry of the TLS report suppression list.
type Suppression struct {
	Entry string    `json:"entry"`
	Note  string    `json:"note"`
	Added time.Time `json:"added,omitzero"`
}

func settingDTO(e settings.Entry) Setting {
	out := Setting{Key: e.Key, Kind: string(e.Kind), Value: e.Value, Set: e.IsSet, Default: e.Default, Help: e.Help}
	if e.Staged != nil {
		c := changeDTO(*e.Staged)
		out.Staged = &c
	}
	return out
}

func changeDTO(c settings.Change) SettingChange {
	out := SettingChange{Key: c.Key, Old: c.Old, OldSet: c.OldSet, New: c.New, NewSet: c.NewSet}
	if d, ok := defOf(c.Key); ok {
		out.Default = d.Default
	}
	return out
}

func commitDTO(s settings.Snapshot) CommitResult {
	out := CommitResult{Generation: s.Generation, Values: s.Values}
	if out.Values == nil {
		out.Values = map[string]string{}
	}
	return out
}

func generationDTO(g settings.Generation) Generation {
	out := Generation{Generation: g.Number, Committed: utc(g.Committed), Note: g.Note, Author: g.Author,
		RollbackOf: g.RollbackOf, Values: g.Values}
	if out.Values == nil {
		out.Values = map[string]string{}
	}
	return out
}

func sentReportDTO(s tlsreport.SentReport) SentReport {
	return SentReport{
		Day:          s.Day.UTC().Format(DayFormat),
		Domain:       s.Domain,
		ReportID:     s.ReportID,
		Destination:  s.Destination,
		Status:       s.Status,
		Attempts:     s.Attempts,
		FirstAttempt: utc(s.FirstAttempt),
		LastAttempt:  utc(s.LastAttempt),
		NextAttempt:  utc(s.NextAttempt),
		MsgID:        s.MsgID,
		LastError:    s.LastError,
	}
}

func sendResultDTO(r tlsreport.SendResult) SendResult {
	out := SendResult{Day: r.Day.UTC().Format(DayFormat), Domains: make([]SendDomainResult, 0, len(r.Domains))}
	for _, d := range r.Domains {
		dr := SendDomainResult{Domain: d.Domain, ReportID: d.ReportID, Status: d.Status, Detail: d.Detail,
			Deliveries: make([]SentReport, 0, len(d.Deliveries))}
		for _, s := range d.Deliveries {
			dr.Deliveries = append(dr.Deliveries, sentReportDTO(s))
		}
		out.Domains = append(out.Domains, dr)
	}
	return out
}

// ComponentState is what a component of the gateway is doing.
type ComponentState string

const (
	// ComponentRunning: the component does its work.
	ComponentRunning ComponentState = "running"
	// ComponentOff: a setting switches the component off (Controller.EnableTLSRPT = false).
	ComponentOff ComponentState = "off"
	// ComponentFailed: the component should run and does not; Reason says why.
	ComponentFailed ComponentState = "failed"
	// ComponentDegraded: the component runs but something is wrong that needs an administrator; Reason
	// says what.
	ComponentDegraded ComponentState = "degraded"
)

// Component is one component's state, in GET /api/v1/status and (without the reason) GET /healthz.
type Component struct {
	Name   string         `json:"name"`
	State  ComponentState `json:"state"`
	Reason string         `json:"reason,omitempty"`
	Since  time.Time      `json:"since,omitzero"`
}

// Health is the body of GET /healthz: the process answers, and which components run. Status is "ok", or
// "degraded" when a component failed (GET /api/v1/status has the reason).
type Health struct {
	Status     string      `json:"status"`
	Components []Component `json:"components,omitempty"`
}

// DKIMRecord is the DNS record that publishes the key TLS reports are signed with (RFC 8460 Section 3), in
// GET /api/v1/status and on the console's reports page.
type DKIMRecord struct {
	// Name is the owner name, <selector>._domainkey.<domain>; Value the TXT record's text.
	Name  string `json:"name"`
	Value string `json:"value"`
	// KeyFile is the private key's file.
	KeyFile string `json:"key_file"`
	// Published is true when DNS answers Value's key at Name; Problem says otherwise why not.
	Published bool   `json:"published"`
	Problem   string `json:"problem,omitempty"`
}
