package admin

import (
	"time"

	"github.com/mxgate/mxgate/internal/dane"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlspolicy"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// Explanation is GET /api/v1/policy/{domain} (`mxgate policy explain`, the console's domain page): the plan
// the TLS decision point would make for a domain now, and why, with the MX hosts it would allow. The daemon
// makes it; the API sends it and the console renders it as this one type.
type Explanation struct {
	Domain string `json:"domain"`
	// Route is the static route's hosts when one applies (MTA-STS is then not consulted).
	Route   []string         `json:"route,omitempty"`
	Plan    string           `json:"plan"`
	Source  tlspolicy.Source `json:"source"`
	Level   tlspolicy.Level  `json:"level"`
	Reason  string           `json:"reason"`
	STSMode mtasts.Mode      `json:"sts_mode,omitempty"`
	STSID   string           `json:"sts_id,omitempty"`
	STS     *STSCacheInfo    `json:"sts_cache,omitempty"`
	// DiscoveryFailure is the MTA-STS discovery failure this attempt would report.
	DiscoveryFailure string    `json:"discovery_failure,omitempty"`
	MX               []MXCheck `json:"mx,omitempty"`
	MXError          string    `json:"mx_error,omitempty"`
	// DANE is the plan's DANE mode: off, on or required (dane-only).
	DANE     tlspolicy.DANEMode  `json:"dane"`
	Settings ExplanationSettings `json:"settings"`
}

// ExplanationSettings are the committed settings an explanation depended on.
type ExplanationSettings struct {
	EnableMTASTS bool `json:"Sender.EnableMTASTS"`
	EnableDANE   bool `json:"Sender.EnableDANE"`
	// Rule is the domain's TLS rule, "" when it has none.
	Rule string `json:"rule,omitempty"`
}

// STSCacheInfo is the cached policy behind a plan.
type STSCacheInfo struct {
	ID      string      `json:"id"`
	Mode    mtasts.Mode `json:"mode"`
	MaxAge  int64       `json:"max_age_seconds"`
	MX      []string    `json:"mx_patterns"`
	Fetched time.Time   `json:"fetched"`
	Expires time.Time   `json:"expires"`
}

// MXCheck says whether the plan lets delivery go to one MX host.
type MXCheck struct {
	Host    string            `json:"host"`
	Pref    uint16            `json:"pref"`
	Allowed bool              `json:"allowed"`
	Failure tlsrpt.ResultType `json:"failure,omitempty"`
	Detail  string            `json:"detail,omitempty"`
	// DANE is what the host's TLSA lookup found, when the plan uses DANE.
	DANE *DANECheck `json:"dane,omitempty"`
}

// DANECheck is one MX host's TLSA records as delivery would find them (RFC 7672 Section 2.2).
type DANECheck struct {
	// Status is none, secure, insecure, bogus or failed ("unknown" when the host's address lookup failed).
	Status     dane.Status `json:"status"`
	BaseDomain string      `json:"base_domain,omitempty"`
	TLSA       []string    `json:"tlsa,omitempty"`
	// Usable: a secure RRset with a usable record: TLS must be authenticated by it (it takes precedence
	// over MTA-STS for this host).
	Usable bool `json:"usable"`
}

// Status is GET /api/v1/status (`mxgate status`): the node's state.
type Status struct {
	Node       string           `json:"node"`
	SMTP       string           `json:"smtp"`
	Admin      string           `json:"admin"`
	DataDir    string           `json:"data_dir"`
	Uptime     string           `json:"uptime"`
	Generation StatusGeneration `json:"settings_generation"`
	// EnableMTASTS, EnableDANE and EnableTLSRPT are the committed Sender.EnableMTASTS, Sender.EnableDANE
	// and Controller.EnableTLSRPT.
	EnableMTASTS bool `json:"Sender.EnableMTASTS"`
	EnableDANE   bool `json:"Sender.EnableDANE"`
	EnableTLSRPT bool `json:"Controller.EnableTLSRPT"`
	// TLSOverrides lists the per-domain rules that replace the domain's published policies ("domain: rule"):
	// deliberate downgrades an administrator should not forget.
	TLSOverrides []string       `json:"tls_overrides,omitempty"`
	Queue        queue.Summary  `json:"queue"`
	STSCache     map[string]int `json:"mtasts_cache_entries"`
	// DNSSEC counts the resolver's answers by what they said about DNSSEC (since start).
	DNSSEC *dnsx.DNSSECStats `json:"dnssec,omitempty"`
	// Warnings are conditions an administrator should fix.
	Warnings []string `json:"warnings,omitempty"`
}

// StatusGeneration is the committed settings generation and the one this node runs.
type StatusGeneration struct {
	Committed int `json:"committed"`
	Running   int `json:"running"`
}
