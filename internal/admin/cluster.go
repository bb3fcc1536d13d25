package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
)

// ClusterAPI is what the API and the console need of the cluster: the node registry, every node's queue,
// and the actions on a message of any node. The daemon implements it; on a single node it reduces to the
// local queue and one node.
type ClusterAPI interface {
	// Nodes lists the registry, each node flagged when it lags or is silent.
	Nodes(ctx context.Context) (NodeList, error)
	// ListQueue lists the messages matching f on every node. A node that cannot be reached is reported in
	// ClusterQueue.Unreachable, never left out silently.
	ListQueue(ctx context.Context, f queue.Filter) (ClusterQueue, error)
	// Message returns message id of node; "" means this node.
	Message(ctx context.Context, node, id string) (queue.MessageDetail, error)
	// Act does a on message id of node, on that node; "" means this node.
	Act(ctx context.Context, node, id string, a queue.Action) error
	// Forget removes a retired node's row from the registry (a node that still runs writes it again).
	Forget(ctx context.Context, node string) error
	// Bulk does the bulk action req (or, with DryRun, says what it would do) on every node of the registry,
	// each on its own queue, and sums the results. A node that did not do it (unreachable, refused, failed)
	// is named in BulkResult.Failed, never counted as done. With Confirm set, nothing is done on any node
	// when the nodes together would affect more messages than that (queue.ErrSelectionGrew).
	Bulk(ctx context.Context, req BulkRequest) (BulkResult, error)
}

// ErrPeer wraps the failure to reach another node's admin API (a 502 of this one).
var ErrPeer = errors.New("cannot reach the node")

// NodeList is GET /api/v1/nodes (`mxgate nodes`).
type NodeList struct {
	// Self is the name of the node that answered.
	Self string `json:"self"`
	// Committed is the newest settings generation committed.
	Committed int `json:"committed_generation"`
	// SilentAfter is how old a heartbeat may be before its node is flagged silent.
	SilentAfter string     `json:"silent_after"`
	Nodes       []NodeInfo `json:"nodes"`
}

// NodeInfo is one node of the registry.
type NodeInfo struct {
	Name     string `json:"name"`
	AdminURL string `json:"admin_url"`
	Version  string `json:"version"`
	Self     bool   `json:"self,omitempty"`
	// Running is the settings generation the node applies; Committed the newest it had seen at its last
	// heartbeat.
	Running   int          `json:"running_generation"`
	Committed int          `json:"committed_generation"`
	Queued    int          `json:"queued_messages"`
	Started   time.Time    `json:"started,omitzero"`
	Heartbeat time.Time    `json:"last_heartbeat"`
	TLS       nodes.TLSMix `json:"tls_mix"`
	// Flags are "lagging" and "silent"; Problem says why in words.
	Flags   []nodes.Flag `json:"flags,omitempty"`
	Problem string       `json:"problem,omitempty"`
}

// NodeInfoOf returns the API's form of a registry row.
func NodeInfoOf(v nodes.View) NodeInfo {
	return NodeInfo{Name: v.Name, AdminURL: v.AdminURL, Version: v.Version, Self: v.Self, Running: v.Running,
		Committed: v.Committed, Queued: v.Queued, Started: utc(v.Started), Heartbeat: utc(v.Heartbeat), TLS: v.TLS,
		Flags: v.Flags, Problem: v.Problem}
}

// NodeMessage is a message of the cluster-wide queue, with the node that holds it.
type NodeMessage struct {
	Node string `json:"node"`
	queue.MessageInfo
}

// NodeError is a node whose queue could not be read.
type NodeError struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

// ClusterQueue is every node's queue.
type ClusterQueue struct {
	Messages    []NodeMessage
	Unreachable []NodeError
}

// ClusterMessage is a message of GET /api/v1/cluster/queue.
type ClusterMessage struct {
	Node string `json:"node"`
	Message
}

// ClusterQueueList is GET /api/v1/cluster/queue (`mxgate queue list --all-nodes`).
type ClusterQueueList struct {
	Messages    []ClusterMessage `json:"messages"`
	Unreachable []NodeError      `json:"unreachable,omitempty"`
}

func (s *Server) clusterRoutes() {
	m := s.mux
	m.HandleFunc("GET /api/v1/nodes", s.nodesList)
	m.HandleFunc("GET /api/v1/cluster/queue", s.clusterQueue)
	m.HandleFunc("DELETE /api/v1/nodes/{name}", s.nodeForget)
}

func (s *Server) nodeForget(w http.ResponseWriter, r *http.Request) {
	if s.opts.Cluster == nil {
		writeError(w, http.StatusNotImplemented, "the node registry is not available on this node")
		return
	}
	name := r.PathValue("name")
	if err := s.opts.Cluster.Forget(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: node forgotten", "node", name, "ip", remoteIP(r))
	writeJSON(w, http.StatusOK, ActionResult{Action: "forget", Entry: name})
}

func (s *Server) nodesList(w http.ResponseWriter, r *http.Request) {
	if s.opts.Cluster == nil {
		writeError(w, http.StatusNotImplemented, "the node registry is not available on this node")
		return
	}
	l, err := s.opts.Cluster.Nodes(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) clusterQueue(w http.ResponseWriter, r *http.Request) {
	if s.opts.Cluster == nil {
		writeError(w, http.StatusNotImplemented, "the cluster queue is not available on this node")
		return
	}
	f, err := parseFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cq, err := s.opts.Cluster.ListQueue(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := ClusterQueueList{Messages: make([]ClusterMessage, 0, len(cq.Messages)), Unreachable: cq.Unreachable}
	for _, m := range cq.Messages {
		out.Messages = append(out.Messages, ClusterMessage{Node: m.Node, Message: messageDTO(m.MessageInfo)})
	}
	writeJSON(w, http.StatusOK, out)
}

// nodeParam returns the ?node= of a message request when it names another node than this one ("" for
// this node), so that the request is forwarded to the node holding the message.
func (s *Server) nodeParam(r *http.Request) string {
	return r.URL.Query().Get("node")
}

// peerAuthorized reports whether r carries the cluster secret and asks for what another node may ask: a
// queue listing, a message, an action on one message, a bulk action on this node's queue, or the status.
// Everything else (settings, policy cache, registry) needs the node's own admin token.
func (s *Server) peerAuthorized(r *http.Request) bool {
	if s.opts.ClusterSecret == nil {
		return false
	}
	secret := s.opts.ClusterSecret()
	if secret == "" {
		return false
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got, want := sha256.Sum256([]byte(strings.TrimSpace(tok))), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return false
	}
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && (p == "/api/v1/status" || p == "/api/v1/queue"):
		return true
	case p == "/api/v1/queue/bulk":
		// A bulk action fanned out by another node (BulkRequest.AllNodes); it may not fan out again.
		return r.Method == http.MethodPost
	case p == "/api/v1/queue/summary":
		return false
	case strings.HasPrefix(p, "/api/v1/queue/"):
		return r.Method == http.MethodGet || r.Method == http.MethodPost || r.Method == http.MethodDelete
	}
	return false
}

// Nodes returns the node registry.
func (c *Client) Nodes(ctx context.Context) (NodeList, error) {
	var out NodeList
	return out, c.Do(ctx, http.MethodGet, "/api/v1/nodes", nil, &out)
}

// ForgetNode removes node's row from the registry.
func (c *Client) ForgetNode(ctx context.Context, node string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/nodes/"+url.PathEscape(node), nil, nil)
}

// ClusterQueue lists the messages matching f on every node.
func (c *Client) ClusterQueue(ctx context.Context, f QueueFilter) (ClusterQueueList, error) {
	var out ClusterQueueList
	p := strings.Replace(QueuePath(f), "/api/v1/queue", "/api/v1/cluster/queue", 1)
	return out, c.Do(ctx, http.MethodGet, p, nil, &out)
}

// NodeMessagePath is MessagePath for a message of node ("" for the node called).
func NodeMessagePath(node, id, action string) string {
	p := MessagePath(id, action)
	if node != "" {
		p += "?node=" + url.QueryEscape(node)
	}
	return p
}

// Act does a on message id of node ("" for the node called), on the node that holds it.
func (c *Client) Act(ctx context.Context, node, id string, a queue.Action) error {
	if a == queue.ActionDelete {
		return c.Do(ctx, http.MethodDelete, NodeMessagePath(node, id, ""), nil, nil)
	}
	return c.Do(ctx, http.MethodPost, NodeMessagePath(node, id, string(a)), nil, nil)
}

// NodeMessage returns message id of node ("" for the node called).
func (c *Client) NodeMessage(ctx context.Context, node, id string) (MessageDetail, error) {
	var out MessageDetail
	return out, c.Do(ctx, http.MethodGet, NodeMessagePath(node, id, ""), nil, &out)
}

// MessageInfoOf is the reverse of the API's form of a message: what another node's queue listed.
func MessageInfoOf(m Message) queue.MessageInfo {
	return queue.MessageInfo{ID: m.ID, From: m.From, Size: m.Size, Received: m.Received, Expires: m.Expires,
		Attempts: m.Attempts, Held: m.Held, State: m.State, Queued: m.Queued, Delivered: m.Delivered,
		Failed: m.Failed, Quarantined: m.Quarantined, Domains: m.Domains, NextAttempt: m.NextAttempt,
		LastError: m.LastError, RequireTLS: m.RequireTLS, Report: m.Report, DSN: m.DSN}
}

// MessageDetailOf is the reverse of the API's form of a message's detail.
func MessageDetailOf(d MessageDetail) queue.MessageDetail {
	out := queue.MessageDetail{MessageInfo: MessageInfoOf(d.Message), EnvID: d.EnvID, Ret: d.Ret,
		TLSOptional: d.TLSOptional, SMTPUTF8: d.SMTPUTF8, EightBit: d.EightBit, ClientIP: d.ClientIP,
		QuarantineReason: d.QuarantineReason}
	for _, r := range d.Recipients {
		out.Rcpts = append(out.Rcpts, queue.RecipientInfo{Addr: r.Addr, Domain: r.Domain, Notify: r.Notify,
			ORcpt: r.ORcpt, State: r.State, NextAttempt: r.NextAttempt, Attempts: r.Attempts, LastCode: r.LastCode,
			LastEnhanced: r.LastEnhanced, LastText: r.LastText, LastResultType: r.LastResultType,
			LastRemoteMTA: r.LastRemoteMTA, LastTLS: r.LastTLS, LastPolicy: r.LastPolicy, Updated: r.Updated})
	}
	for _, a := range d.Timeline {
		out.Timeline = append(out.Timeline, queue.Attempt{Rcpt: a.Rcpt, At: a.At, Outcome: queue.Outcome(a.Outcome),
			Code: a.Code, Enhanced: a.Enhanced, Text: a.Text, RemoteMTA: a.RemoteMTA, TLS: a.TLS, Policy: a.Policy,
			ResultType: a.ResultType})
	}
	return out
}
