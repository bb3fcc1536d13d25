package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// SettingPath returns the path of one setting.
func SettingPath(key string) string { return "/api/v1/settings/" + url.PathEscape(key) }

// TLSRPTLookupPath returns the path of the live TLSRPT record lookup of domain.
func TLSRPTLookupPath(domain string) string { return "/api/v1/tlsrpt/lookup/" + url.PathEscape(domain) }

// TLSRPTPreviewPath returns the path of the report preview of domain for day (YYYY-MM-DD; "" means today).
func TLSRPTPreviewPath(domain, day string) string {
	p := "/api/v1/tlsrpt/preview/" + url.PathEscape(domain)
	if day != "" {
		p += "?" + url.Values{"day": {day}}.Encode()
	}
	return p
}

// SuppressionPath returns the path of one suppression list entry. The entry is escaped as one path segment,
// so that https URLs keep their slashes.
func SuppressionPath(entry string) string {
	return "/api/v1/tlsrpt/suppressions/" + url.PathEscape(entry)
}

// Settings lists every setting with its committed value, default and staged change.
func (c *Client) Settings(ctx context.Context) ([]Setting, error) {
	var out []Setting
	return out, c.Do(ctx, http.MethodGet, "/api/v1/settings", nil, &out)
}

// Setting returns one setting.
func (c *Client) Setting(ctx context.Context, key string) (Setting, error) {
	var out Setting
	return out, c.Do(ctx, http.MethodGet, SettingPath(key), nil, &out)
}

// SetSetting stages key = value and returns the setting with its staged change.
func (c *Client) SetSetting(ctx context.Context, key, value string) (Setting, error) {
	var out Setting
	return out, c.Do(ctx, http.MethodPut, SettingPath(key), SetRequest{Value: &value}, &out)
}

// UnsetSetting stages the removal of key (back to its default).
func (c *Client) UnsetSetting(ctx context.Context, key string) (Setting, error) {
	var out Setting
	return out, c.Do(ctx, http.MethodDelete, SettingPath(key), nil, &out)
}

// ConfigDiff returns the staged changes.
func (c *Client) ConfigDiff(ctx context.Context) (ConfigDiff, error) {
	var out ConfigDiff
	return out, c.Do(ctx, http.MethodGet, "/api/v1/config/diff", nil, &out)
}

// Commit makes the staged changes a new generation.
func (c *Client) Commit(ctx context.Context, req CommitRequest) (CommitResult, error) {
	var out CommitResult
	return out, c.Do(ctx, http.MethodPost, "/api/v1/config/commit", req, &out)
}

// Discard drops the staged changes and returns them.
func (c *Client) Discard(ctx context.Context) (ConfigDiff, error) {
	var out ConfigDiff
	return out, c.Do(ctx, http.MethodPost, "/api/v1/config/discard", nil, &out)
}

// History returns every generation, newest first.
func (c *Client) History(ctx context.Context) ([]Generation, error) {
	var out []Generation
	return out, c.Do(ctx, http.MethodGet, "/api/v1/config/history", nil, &out)
}

// Rollback commits a new generation with the settings of req.Generation.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest) (CommitResult, error) {
	var out CommitResult
	return out, c.Do(ctx, http.MethodPost, "/api/v1/config/rollback", req, &out)
}

// Apply stages a whole settings document (values as strings) and returns the resulting diff.
func (c *Client) Apply(ctx context.Context, vals map[string]string) (ConfigDiff, error) {
	req := ApplyRequest{Settings: make(map[string]json.RawMessage, len(vals))}
	for k, v := range vals {
		b, err := json.Marshal(v)
		if err != nil {
			return ConfigDiff{}, err
		}
		req.Settings[k] = b
	}
	var out ConfigDiff
	return out, c.Do(ctx, http.MethodPost, "/api/v1/config/apply", req, &out)
}

// TLSRPTLookup returns the live _smtp._tls record of domain.
func (c *Client) TLSRPTLookup(ctx context.Context, domain string) (TLSRPTLookup, error) {
	var out TLSRPTLookup
	return out, c.Do(ctx, http.MethodGet, TLSRPTLookupPath(domain), nil, &out)
}

// TLSRPTPending lists the aggregates whose reports have not been sent.
func (c *Client) TLSRPTPending(ctx context.Context) ([]PendingReport, error) {
	var out []PendingReport
	return out, c.Do(ctx, http.MethodGet, "/api/v1/tlsrpt/pending", nil, &out)
}

// TLSRPTPreview returns the RFC 8460 JSON report of domain for day (YYYY-MM-DD; "" means today).
func (c *Client) TLSRPTPreview(ctx context.Context, domain, day string) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.Do(ctx, http.MethodGet, TLSRPTPreviewPath(domain, day), nil, &out)
}

// TLSRPTSend sends the reports of a day that is over, or of the current partial day.
func (c *Client) TLSRPTSend(ctx context.Context, req SendRequest) (SendResult, error) {
	var out SendResult
	return out, c.Do(ctx, http.MethodPost, "/api/v1/tlsrpt/send", req, &out)
}

// TLSRPTSent returns the report log.
func (c *Client) TLSRPTSent(ctx context.Context) ([]SentReport, error) {
	var out []SentReport
	return out, c.Do(ctx, http.MethodGet, "/api/v1/tlsrpt/sent", nil, &out)
}

// Suppressions returns the TLS report suppression list.
func (c *Client) Suppressions(ctx context.Context) ([]Suppression, error) {
	var out []Suppression
	return out, c.Do(ctx, http.MethodGet, "/api/v1/tlsrpt/suppressions", nil, &out)
}

// Suppress adds entry (an address, a domain or an https URL) to the suppression list.
func (c *Client) Suppress(ctx context.Context, entry, note string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/tlsrpt/suppressions", SuppressRequest{Entry: entry, Note: note}, nil)
}

// Unsuppress removes entry from the suppression list.
func (c *Client) Unsuppress(ctx context.Context, entry string) error {
	return c.Do(ctx, http.MethodDelete, SuppressionPath(entry), nil, nil)
}
