package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlsrpt"
)

// BulkRequest is POST /api/v1/queue/bulk: one action on every message the selection matches. Either All or
// at least one filter is required; filters combine with AND.
type BulkRequest struct {
	// Action is retry, hold, release, delete or bounce.
	Action string `json:"action"`
	All    bool   `json:"all,omitempty"`
	// Domain selects messages with a queued or quarantined recipient in this domain.
	Domain string `json:"domain,omitempty"`
	// ResultType selects messages with a queued recipient whose last attempt failed with this RFC 8460
	// result type, e.g. "certificate-expired".
	ResultType string `json:"result_type,omitempty"`
	// Held selects held messages only.
	Held bool `json:"held,omitempty"`
	// OlderThan selects messages received longer ago than this: a Go duration ("36h") or whole days ("2d").
	OlderThan string `json:"older_than,omitempty"`
	// DryRun answers what the action would do and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// Confirm is the number of messages the operator agreed to act on, as a dry run reported it. Required
	// for delete and bounce; the action is refused (409) when more messages match by then.
	Confirm int `json:"confirm,omitempty"`
	// AllNodes acts on the queue of every node of the registry (cluster mode), each node doing the action
	// on its own queue; the counts are summed and the nodes that could not do it are named. With Confirm,
	// the action is refused (409) when the nodes together would affect more messages.
	AllNodes bool `json:"all_nodes,omitempty"`
}

// BulkResult answers POST /api/v1/queue/bulk.
type BulkResult struct {
	Action string `json:"action"`
	DryRun bool   `json:"dry_run"`
	// Matched counts the messages the selection matches; Affected those the action changes (or would).
	Matched  int `json:"matched"`
	Affected int `json:"affected"`
	// Recipients counts the recipients of the affected messages that the action changes.
	Recipients int `json:"recipients"`
	// Gone counts messages that left the queue between the selection and the action.
	Gone int `json:"gone"`
	// InFlight counts messages left alone because a delivery attempt of theirs was in flight (delete and
	// bounce); run the action again once it is recorded.
	InFlight int `json:"in_flight"`
	// Destructive is true for delete and bounce: a real run needs Confirm.
	Destructive bool `json:"destructive"`
	// IDs are the affected messages, oldest first, at most MaxBulkIDs of them (with AllNodes, of every
	// node: Nodes says which node holds which).
	IDs []string `json:"ids"`
	// Nodes, with AllNodes, is each node's own result, for the nodes that did the action.
	Nodes []NodeBulkResult `json:"nodes,omitempty"`
	// Failed, with AllNodes, names the nodes that did not do the action (unreachable, refused, or failed
	// part-way) and why: nothing of theirs is counted above.
	Failed []NodeError `json:"failed_nodes,omitempty"`
}

// NodeBulkResult is one node's part of a bulk action on every node.
type NodeBulkResult struct {
	Node string `json:"node"`
	BulkResult
}

// BulkDTO returns the API's form of a queue's bulk result.
func BulkDTO(r queue.BulkResult, dryRun bool) BulkResult { return bulkDTO(r, dryRun) }

// MaxBulkIDs bounds the message ids a BulkResult lists.
const MaxBulkIDs = 1000

// ParseAge reads a duration for --older-than and older_than: a Go duration ("36h", "90m") or whole days
// ("2d"). It must be positive.
func ParseAge(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("invalid age %q: want a duration like 36h or a number of days like 2d", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("invalid age %q: want a duration like 36h or a number of days like 2d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid age %q: must be positive", s)
	}
	return d, nil
}

// Selection checks a BulkRequest and turns it into the queue's types; errors wrap queue.ErrUnknownAction or
// queue.ErrBadSelection and name the member at fault.
func (b BulkRequest) Selection() (queue.Action, queue.Selection, error) {
	a, err := queue.ParseAction(b.Action)
	if err != nil {
		return "", queue.Selection{}, err
	}
	s := queue.Selection{All: b.All, ResultType: tlsrpt.ResultType(b.ResultType), Held: b.Held}
	if b.Domain != "" {
		d, err := address.ParseDomain(b.Domain)
		if err != nil {
			return "", s, fmt.Errorf("%w: domain: %w", queue.ErrBadSelection, err)
		}
		s.Domain = d.String()
	}
	for _, c := range b.ResultType {
		if !(c >= 'a' && c <= 'z' || c == '-') {
			return "", s, fmt.Errorf("%w: result_type %q: an RFC 8460 result type is lower-case letters and '-'", queue.ErrBadSelection, b.ResultType)
		}
	}
	if b.OlderThan != "" {
		d, err := ParseAge(b.OlderThan)
		if err != nil {
			return "", s, fmt.Errorf("%w: older_than: %w", queue.ErrBadSelection, err)
		}
		s.OlderThan = d
	}
	if b.Confirm < 0 {
		return "", s, fmt.Errorf("%w: confirm must not be negative", queue.ErrBadSelection)
	}
	s.Max = b.Confirm
	return a, s, s.Check()
}

func bulkDTO(r queue.BulkResult, dryRun bool) BulkResult {
	ids := r.IDs
	if len(ids) > MaxBulkIDs {
		ids = ids[:MaxBulkIDs]
	}
	if ids == nil {
		ids = []string{}
	}
	return BulkResult{Action: string(r.Action), DryRun: dryRun, Matched: r.Matched, Affected: r.Affected,
		Recipients: r.Recipients, Gone: r.Gone, InFlight: r.InFlight, Destructive: r.Action.Destructive(), IDs: ids}
}

func (s *Server) queueBulk(w http.ResponseWriter, r *http.Request) {
	var req BulkRequest
	if err := readBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a, sel, err := req.Selection()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.AllNodes {
		s.queueBulkAllNodes(w, r, req, a)
		return
	}
	if req.DryRun {
		res, err := s.opts.Queue.PreviewBulk(r.Context(), a, sel)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, bulkDTO(res, true))
		return
	}
	if a.Destructive() && req.Confirm == 0 {
		writeError(w, http.StatusConflict, fmt.Sprintf("%s of many messages needs confirmation: run it with dry_run first, then send confirm with the number of messages it reported", a))
		return
	}
	res, err := s.opts.Queue.Bulk(r.Context(), a, sel)
	if err != nil && res.Affected == 0 {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: queue bulk "+string(a), "matched", res.Matched, "affected", res.Affected, "gone", res.Gone,
		"in_flight", res.InFlight, "ip", remoteIP(r))
	if err != nil {
		// Part of the selection was acted on: say so with the error.
		s.fail(w, r, fmt.Errorf("%w (after %d of the messages)", err, res.Affected))
		return
	}
	writeJSON(w, http.StatusOK, bulkDTO(res, false))
}

// queueBulkAllNodes runs a bulk action on every node. Another node's call (with the cluster secret) may not
// ask for it: a node acts on its own queue for the node that fans the action out.
func (s *Server) queueBulkAllNodes(w http.ResponseWriter, r *http.Request, req BulkRequest, a queue.Action) {
	if !s.authorized(r) && s.peerAuthorized(r) {
		writeError(w, http.StatusBadRequest, "all_nodes: a call from another node acts on this node's queue only")
		return
	}
	if s.opts.Cluster == nil {
		writeError(w, http.StatusNotImplemented, "the cluster queue is not available on this node")
		return
	}
	if !req.DryRun && a.Destructive() && req.Confirm == 0 {
		writeError(w, http.StatusConflict, fmt.Sprintf("%s of many messages needs confirmation: run it with dry_run first, then send confirm with the number of messages it reported", a))
		return
	}
	res, err := s.opts.Cluster.Bulk(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !req.DryRun {
		failed := make([]string, 0, len(res.Failed))
		for _, f := range res.Failed {
			failed = append(failed, f.Node)
		}
		s.log.Info("admin: queue bulk "+string(a)+" on every node", "matched", res.Matched, "affected", res.Affected,
			"gone", res.Gone, "in_flight", res.InFlight, "nodes", len(res.Nodes), "failed_nodes", failed, "ip", remoteIP(r))
	}
	writeJSON(w, http.StatusOK, res)
}

// QueueBulk sends a bulk action (or, with DryRun, asks what it would do).
func (c *Client) QueueBulk(ctx context.Context, req BulkRequest) (BulkResult, error) {
	var out BulkResult
	return out, c.Do(ctx, http.MethodPost, "/api/v1/queue/bulk", req, &out)
}

// bulkStatus maps the queue's bulk errors to HTTP statuses.
func bulkStatus(err error) (int, bool) {
	switch {
	case errors.Is(err, queue.ErrBadSelection), errors.Is(err, queue.ErrUnknownAction):
		return http.StatusBadRequest, true
	case errors.Is(err, queue.ErrSelectionGrew):
		return http.StatusConflict, true
	}
	return 0, false
}
