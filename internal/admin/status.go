package admin

import (
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/queue"
)

// Status is GET /api/v1/status (`mxgate status`): the node's state.
type Status struct {
	Node    string `json:"node"`
	SMTP    string `json:"smtp"`
	Admin   string `json:"admin"`
	DataDir string `json:"data_dir"`
	// Database is the PostgreSQL database the cluster shares (password hidden); empty on a single node.
	Database   string           `json:"database,omitempty"`
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
	// Components says what each component does; a failed one carries its reason.
	Components []Component `json:"components"`
	// TLSRPTDKIM is the DNS record of the key TLS reports are signed with, while TLS reporting is on.
	TLSRPTDKIM *DKIMRecord `json:"tlsrpt_dkim,omitempty"`
	// DNSSEC counts the resolver's answers by what they said about DNSSEC (since start).
	DNSSEC *dnsx.DNSSECStats `json:"dnssec,omitempty"`
	// Warnings are conditions an administrator should fix, one sentence each.
	Warnings []string `json:"warnings,omitempty"`
}

// StatusGeneration is the committed settings generation and the one this node runs.
type StatusGeneration struct {
	Committed int `json:"committed"`
	Running   int `json:"running"`
}
