package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/delivery"
)

// Client calls the admin API of a running gateway.
type Client struct {
	// BaseURL is the API's scheme, host and port, e.g. "http://127.0.0.1:8025".
	BaseURL string
	Token   string
	// HTTP is the client to use; nil means http.DefaultClient.
	HTTP *http.Client
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the "error" member of the answer, or a description of a non-JSON answer
	Body    []byte // the answer as read, which may say more (a bulk action that stopped part-way)
}

func (e *APIError) Error() string { return e.Message }

// maxResponse bounds what Do reads of an answer.
const maxResponse = 64 << 20

// Do sends a request with in (when not nil) as its JSON body and decodes the JSON answer into out (when not
// nil; a *json.RawMessage receives the answer as is). A non-2xx answer is returned as an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin client: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API (is mxgate serve running?): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("admin API: %s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return &APIError{Status: resp.StatusCode, Message: eb.Error, Body: b}
		}
		msg := strings.TrimSpace(string(b))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("admin API: %s %s: %s: %s", method, path, resp.Status, msg)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin API: %s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

// IsNotFound reports whether err is an API answer 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// QueueFilter selects messages for ListQueue; zero fields match everything.
type QueueFilter struct {
	Domain   string
	Sender   string
	State    string // queued, delivered, failed or quarantined
	HeldOnly bool
	Limit    int // 0 means the server's default
}

// QueuePath returns the path of GET /api/v1/queue for f.
func QueuePath(f QueueFilter) string {
	q := url.Values{}
	if f.Domain != "" {
		q.Set("domain", f.Domain)
	}
	if f.Sender != "" {
		q.Set("sender", f.Sender)
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.HeldOnly {
		q.Set("held", "true")
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if len(q) == 0 {
		return "/api/v1/queue"
	}
	return "/api/v1/queue?" + q.Encode()
}

// MessagePath returns the path of message id, with action ("retry", "hold", ...) appended when not "".
func MessagePath(id, action string) string {
	p := "/api/v1/queue/" + url.PathEscape(id)
	if action != "" {
		p += "/" + action
	}
	return p
}

// STSPath returns the path of domain's cached policy, with action ("refresh") appended when not "".
func STSPath(domain, action string) string {
	p := "/api/v1/sts/cache/" + url.PathEscape(domain)
	if action != "" {
		p += "/" + action
	}
	return p
}

// PolicyPath returns the path of the policy explanation for domain.
func PolicyPath(domain string) string { return "/api/v1/policy/" + url.PathEscape(domain) }

// PolicyPathRequireTLS is PolicyPath for a message received with REQUIRETLS.
func PolicyPathRequireTLS(domain string) string { return PolicyPath(domain) + "?requiretls=true" }

// ListQueue lists the messages matching f, oldest first.
func (c *Client) ListQueue(ctx context.Context, f QueueFilter) ([]Message, error) {
	var out []Message
	return out, c.Do(ctx, http.MethodGet, QueuePath(f), nil, &out)
}

// QueueSummary returns the queue at a glance.
func (c *Client) QueueSummary(ctx context.Context) (QueueSummary, error) {
	var out QueueSummary
	return out, c.Do(ctx, http.MethodGet, "/api/v1/queue/summary", nil, &out)
}

// Message returns everything the queue knows about message id.
func (c *Client) Message(ctx context.Context, id string) (MessageDetail, error) {
	var out MessageDetail
	return out, c.Do(ctx, http.MethodGet, MessagePath(id, ""), nil, &out)
}

// Retry makes the queued recipients of message id due now.
func (c *Client) Retry(ctx context.Context, id string) error {
	return c.messageAction(ctx, id, "retry")
}

// Hold stops deliveries of message id until Release.
func (c *Client) Hold(ctx context.Context, id string) error { return c.messageAction(ctx, id, "hold") }

// Release undoes Hold.
func (c *Client) Release(ctx context.Context, id string) error {
	return c.messageAction(ctx, id, "release")
}

// Bounce fails the remaining recipients of message id and sends the DSNs they asked for.
func (c *Client) Bounce(ctx context.Context, id string) error {
	return c.messageAction(ctx, id, "bounce")
}

// Delete removes message id without a DSN.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, MessagePath(id, ""), nil, nil)
}

func (c *Client) messageAction(ctx context.Context, id, action string) error {
	return c.Do(ctx, http.MethodPost, MessagePath(id, action), nil, nil)
}

// STSCache lists the cached MTA-STS policies.
func (c *Client) STSCache(ctx context.Context) ([]STSEntry, error) {
	var out []STSEntry
	return out, c.Do(ctx, http.MethodGet, "/api/v1/sts/cache", nil, &out)
}

// STSShow returns domain's cached policy.
func (c *Client) STSShow(ctx context.Context, domain string) (STSEntry, error) {
	var out STSEntry
	return out, c.Do(ctx, http.MethodGet, STSPath(domain, ""), nil, &out)
}

// STSRefresh fetches domain's policy now and returns the cached result.
func (c *Client) STSRefresh(ctx context.Context, domain string) (STSEntry, error) {
	var out STSEntry
	return out, c.Do(ctx, http.MethodPost, STSPath(domain, "refresh"), nil, &out)
}

// STSFlush removes domain's cached policy.
func (c *Client) STSFlush(ctx context.Context, domain string) error {
	return c.Do(ctx, http.MethodDelete, STSPath(domain, ""), nil, nil)
}

// Explain returns the explanation of the TLS policy delivery would apply to domain.
func (c *Client) Explain(ctx context.Context, domain string) (delivery.Explanation, error) {
	var out delivery.Explanation
	return out, c.Do(ctx, http.MethodGet, PolicyPath(domain), nil, &out)
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.Do(ctx, http.MethodGet, "/api/v1/status", nil, &out)
}
