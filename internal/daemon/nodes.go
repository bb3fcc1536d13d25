package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/nodes"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/version"
)

// componentRegistry is the node registry's heartbeat, shown in cluster mode only: failed while heartbeats
// cannot be written (the other nodes then see this node go silent), degraded while another process writes
// this node's row (the same node name).
const componentRegistry = "registry"

// clashState is what the heartbeat found of another process running under this node's name.
type clashState struct {
	mu       sync.Mutex
	lastBeat time.Time  // this process's last heartbeat written; zero before the first
	seen     time.Time  // when another process's write was last found; zero if never
	other    nodes.Node // that process's row as found then
}

// clashReason says why this node's name clashes, as of now; empty when no other process has written its row
// for silentAfter.
func (d *Daemon) clashReason(now time.Time) string {
	d.clash.mu.Lock()
	defer d.clash.mu.Unlock()
	if d.clash.seen.IsZero() || now.Sub(d.clash.seen) > d.silentAfter {
		return ""
	}
	return nodes.ClashReason(d.cfg.Node, d.instance, d.selfURL(), d.clash.other)
}

// peerTimeout bounds one call to another node's admin API.
const peerTimeout = 10 * time.Second

// openNodes opens the node registry where the settings are: the node's SQLite database, or the database the
// cluster shares. The cluster secret is read (made, by the first node) here; if the database does not answer
// now, the heartbeat loop reads it later and other nodes' calls are refused until then.
func (d *Daemon) openNodes(ctx context.Context, o Options) error {
	d.nodeStore = nodes.SQLiteStorage{DB: d.DB}
	if d.pg != nil {
		d.nodeStore = nodes.PostgresStorage{PG: d.pg}
	}
	d.beatEvery = cmp.Or(o.HeartbeatInterval, nodes.DefaultInterval)
	d.silentAfter = 4 * d.beatEvery
	d.lagAfter = 2 * d.beatEvery
	d.beatNow = make(chan struct{}, 1)
	if d.pg != nil && d.pgDown != nil {
		// Started from the local copies: the heartbeat sets the registry up once the database answers.
		return nil
	}
	if err := d.migrateNodes(ctx); err != nil {
		if d.pg == nil {
			return err
		}
		d.log.Warn("node registry not set up yet: the heartbeat retries", "err", err)
		return nil
	}
	if err := d.loadSecret(ctx); err != nil {
		d.log.Warn("cluster secret not read yet: calls from other nodes are refused until it is", "err", err)
	}
	return nil
}

// migrateNodes brings the registry's tables up to date, once.
func (d *Daemon) migrateNodes(ctx context.Context) error {
	if d.nodesReady.Load() {
		return nil
	}
	if err := d.nodeStore.Migrate(ctx); err != nil {
		return err
	}
	d.nodesReady.Store(true)
	return nil
}

func (d *Daemon) loadSecret(ctx context.Context) error {
	if d.secret.Load() != nil {
		return nil
	}
	s, err := d.nodeStore.Secret(ctx, nodes.NewSecret())
	if err != nil {
		return err
	}
	d.secret.Store(&s)
	return nil
}

// clusterSecret is the secret other nodes present (admin.Options.ClusterSecret).
func (d *Daemon) clusterSecret() string {
	if s := d.secret.Load(); s != nil {
		return *s
	}
	return ""
}

// selfURL is the admin URL the other nodes reach this node at: admin.url, or the admin listener's address
// (a wildcard address replaced by the node name).
func (d *Daemon) selfURL() string {
	if d.cfg.Admin.URL != "" {
		return strings.TrimSuffix(d.cfg.Admin.URL, "/")
	}
	scheme := "http://"
	if d.adminTLS != nil {
		scheme = "https://"
	}
	addr := d.AdminAddr()
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().IsUnspecified() {
		addr = net.JoinHostPort(d.cfg.Node, fmt.Sprint(ap.Port()))
	}
	return scheme + addr
}

// heartbeat writes this node's row of the registry.
func (d *Daemon) heartbeat(ctx context.Context) error {
	if err := d.migrateNodes(ctx); err != nil {
		return err
	}
	if err := d.loadSecret(ctx); err != nil {
		return err
	}
	st, err := d.Queue.Stats(ctx)
	if err != nil {
		return err
	}
	committed := d.settingsStore.Current().Generation
	if d.pg != nil {
		if committed, err = d.settingsStore.Newest(ctx); err != nil {
			return err
		}
	}
	now := d.now()
	n := nodes.Node{Name: d.cfg.Node, Instance: d.instance, AdminURL: d.selfURL(), Version: version.Get().Version,
		Running: d.runningGeneration(), Committed: committed, Queued: st.QueuedMessages, Heartbeat: now,
		TLS: d.Console.TLSMix(), Clash: d.clashReason(now)}
	if started := d.started.Load(); started != nil {
		n.Started = *started
	}
	prev, err := d.nodeStore.Beat(ctx, n)
	if err != nil {
		return err
	}
	d.clash.mu.Lock()
	if nodes.Clashes(prev, d.instance, d.clash.lastBeat, now, d.silentAfter) {
		d.clash.seen, d.clash.other = now, prev
	}
	d.clash.lastBeat = now
	d.clash.mu.Unlock()
	return nil
}

// beat writes one heartbeat, bounded in time, and records whether it worked.
func (d *Daemon) beat(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := d.heartbeat(bctx)
	cancel()
	if err != nil && ctx.Err() != nil {
		return // stopping
	}
	d.warnings.set(d.log, "heartbeat", err != nil, "cannot write the node's heartbeat: other nodes see this node as silent until it works again", "err", err)
	clash := d.clashReason(d.now())
	d.warnings.set(d.log, "name-clash", clash != "", "node name clash: "+clash)
	if d.pg == nil {
		return
	}
	switch {
	case err != nil:
		d.comps.set(componentRegistry, admin.ComponentFailed, "heartbeat not written (the other nodes see this node as silent): "+err.Error())
	case clash != "":
		d.comps.set(componentRegistry, admin.ComponentDegraded, clash)
	default:
		d.comps.set(componentRegistry, admin.ComponentRunning, "")
	}
}

// runHeartbeat writes the heartbeat every beatEvery, and at once when the running generation changes, until
// ctx ends.
func (d *Daemon) runHeartbeat(ctx context.Context) {
	t := time.NewTicker(d.beatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.beatNow:
		}
		d.beat(ctx)
	}
}

// pokeHeartbeat asks for a heartbeat now (the running generation changed).
func (d *Daemon) pokeHeartbeat() {
	if d.beatNow == nil {
		return
	}
	select {
	case d.beatNow <- struct{}{}:
	default:
	}
}

// clusterAPI is the cluster as the admin API and the console see it (admin.ClusterAPI).
type clusterAPI struct{ d *Daemon }

var _ admin.ClusterAPI = clusterAPI{}

// Nodes implements admin.ClusterAPI.
func (c clusterAPI) Nodes(ctx context.Context) (admin.NodeList, error) {
	d := c.d
	list, err := d.nodeStore.List(ctx)
	if err != nil {
		return admin.NodeList{}, err
	}
	committed := d.settingsStore.Current().Generation
	if d.pg != nil {
		if committed, err = d.settingsStore.Newest(ctx); err != nil {
			return admin.NodeList{}, err
		}
	}
	now := d.now()
	if clash := d.clashReason(now); clash != "" {
		// This process knows of the clash before its row says so (the other process may have written last).
		for i := range list {
			if list[i].Name == d.cfg.Node {
				list[i].Clash = clash
			}
		}
	}
	// When each generation was committed, read once and only if a node runs an older one than the newest.
	var history map[int]time.Time
	committedAt := func(gen int) time.Time {
		if history == nil {
			history = map[int]time.Time{}
			gens, err := d.settingsStore.History(ctx)
			if err != nil {
				d.log.Debug("node list: settings history unreadable: nodes behind are flagged lagging at once", "err", err)
			}
			for _, g := range gens {
				history[g.Number] = g.Committed
			}
		}
		return history[gen]
	}
	views := nodes.Assess(list, d.cfg.Node, committed, committedAt, now, d.silentAfter, d.lagAfter)
	out := admin.NodeList{Self: d.cfg.Node, Committed: committed, SilentAfter: d.silentAfter.String(), Nodes: []admin.NodeInfo{}}
	for _, v := range views {
		out.Committed = max(out.Committed, v.Committed, v.Running)
		out.Nodes = append(out.Nodes, admin.NodeInfoOf(v))
	}
	return out, nil
}

// peer returns a client for node's admin API, authenticated with the cluster secret. TLS to a node whose
// URL is https:// is verified against the trust store (the system's and tls.ca_file).
func (c clusterAPI) peer(n nodes.Node) (*admin.Client, func()) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.d.roots.Load(), MinVersion: tls.VersionTLS12}}
	return &admin.Client{BaseURL: n.AdminURL, Token: c.d.clusterSecret(), HTTP: &http.Client{Timeout: peerTimeout, Transport: tr}},
		tr.CloseIdleConnections
}

// peerError maps another node's answer to the errors the API and the console classify.
func peerError(node string, err error) error {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusNotFound:
			return fmt.Errorf("node %s: %w: %s", node, queue.ErrNotFound, ae.Message)
		case http.StatusConflict:
			return fmt.Errorf("node %s: %w: %s", node, queue.ErrInFlight, ae.Message)
		}
	}
	return fmt.Errorf("%w %s: %w", admin.ErrPeer, node, err)
}

// lookup returns the registry row of node.
func (c clusterAPI) lookup(ctx context.Context, node string) (nodes.Node, error) {
	list, err := c.d.nodeStore.List(ctx)
	if err != nil {
		return nodes.Node{}, err
	}
	for _, n := range list {
		if n.Name == node {
			return n, nil
		}
	}
	return nodes.Node{}, fmt.Errorf("%w: %q", nodes.ErrUnknownNode, node)
}

func (c clusterAPI) local(node string) bool { return node == "" || node == c.d.cfg.Node }

// ListQueue implements admin.ClusterAPI: this node's queue read locally, every other node's through its admin
// API, at the same time.
func (c clusterAPI) ListQueue(ctx context.Context, f queue.Filter) (admin.ClusterQueue, error) {
	d := c.d
	var out admin.ClusterQueue
	local, err := d.Queue.List(ctx, f)
	if err != nil {
		return out, err
	}
	for _, m := range local {
		out.Messages = append(out.Messages, admin.NodeMessage{Node: d.cfg.Node, MessageInfo: m})
	}
	list, err := d.nodeStore.List(ctx)
	if err != nil {
		out.Unreachable = append(out.Unreachable, admin.NodeError{Node: "(other nodes)", Error: "node registry unreadable: " + err.Error()})
		return out, nil
	}
	if clash := d.clashReason(d.now()); clash != "" {
		out.Unreachable = append(out.Unreachable, admin.NodeError{Node: d.cfg.Node,
			Error: "the queue of the other process under this node's name is not listed: " + clash})
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range list {
		if c.local(n.Name) {
			continue
		}
		if n.Clash != "" {
			out.Unreachable = append(out.Unreachable, admin.NodeError{Node: n.Name,
				Error: "only the process at " + n.AdminURL + " is listed under this name: " + n.Clash})
		}
		wg.Go(func() {
			cl, done := c.peer(n)
			defer done()
			msgs, err := cl.ListQueue(ctx, admin.QueueFilter{Domain: f.Domain, Sender: f.Sender, State: f.State, HeldOnly: f.HeldOnly, Limit: f.Limit})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Unreachable = append(out.Unreachable, admin.NodeError{Node: n.Name, Error: peerError(n.Name, err).Error()})
				return
			}
			for _, m := range msgs {
				out.Messages = append(out.Messages, admin.NodeMessage{Node: n.Name, MessageInfo: admin.MessageInfoOf(m)})
			}
		})
	}
	wg.Wait()
	slices.SortStableFunc(out.Messages, func(a, b admin.NodeMessage) int {
		return cmp.Or(a.Received.Compare(b.Received), strings.Compare(a.Node, b.Node), strings.Compare(a.ID, b.ID))
	})
	if f.Limit > 0 && len(out.Messages) > f.Limit {
		out.Messages = out.Messages[:f.Limit]
	}
	slices.SortFunc(out.Unreachable, func(a, b admin.NodeError) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}

// Message implements admin.ClusterAPI.
func (c clusterAPI) Message(ctx context.Context, node, id string) (queue.MessageDetail, error) {
	if c.local(node) {
		return c.d.Queue.Get(ctx, id)
	}
	n, err := c.lookup(ctx, node)
	if err != nil {
		return queue.MessageDetail{}, err
	}
	cl, done := c.peer(n)
	defer done()
	m, err := cl.NodeMessage(ctx, "", id)
	if err != nil {
		return queue.MessageDetail{}, peerError(node, err)
	}
	return admin.MessageDetailOf(m), nil
}

// Act implements admin.ClusterAPI: the action is done by the node that holds the message.
func (c clusterAPI) Act(ctx context.Context, node, id string, a queue.Action) error {
	if c.local(node) {
		return a.Do(ctx, c.d.Queue, id)
	}
	n, err := c.lookup(ctx, node)
	if err != nil {
		return err
	}
	cl, done := c.peer(n)
	defer done()
	if err := cl.Act(ctx, "", id, a); err != nil {
		return peerError(node, err)
	}
	return nil
}

// Forget implements admin.ClusterAPI.
func (c clusterAPI) Forget(ctx context.Context, node string) error {
	return c.d.nodeStore.Forget(ctx, node)
}

// nodeBulk is one node's part of a bulk action on every node: its result, or why it did not do it.
type nodeBulk struct {
	node string
	res  admin.BulkResult
	err  error
}

// bulkOnEach runs req on every node of list (this node's queue locally, the others through their admin API
// with the cluster secret, at the same time); conf, if not nil, gives the Confirm of each node, and a node
// absent from it is left out.
func (c clusterAPI) bulkOnEach(ctx context.Context, list []nodes.Node, req admin.BulkRequest, conf map[string]int) []nodeBulk {
	req.AllNodes = false
	out := make([]nodeBulk, len(list))
	var wg sync.WaitGroup
	for i, n := range list {
		r := req
		if conf != nil {
			k, ok := conf[n.Name]
			if !ok {
				continue
			}
			r.Confirm = k
		}
		out[i].node = n.Name
		if c.local(n.Name) {
			out[i].res, out[i].err = c.localBulk(ctx, r)
			continue
		}
		wg.Go(func() {
			cl, done := c.peer(n)
			defer done()
			res, err := cl.QueueBulk(ctx, r)
			if err != nil {
				err = peerError(n.Name, err)
			}
			out[i].res, out[i].err = res, err
		})
	}
	wg.Wait()
	if conf != nil {
		out = slices.DeleteFunc(out, func(b nodeBulk) bool { return b.node == "" })
	}
	return out
}

// localBulk runs req on this node's queue, as POST /api/v1/queue/bulk does.
func (c clusterAPI) localBulk(ctx context.Context, req admin.BulkRequest) (admin.BulkResult, error) {
	a, sel, err := req.Selection()
	if err != nil {
		return admin.BulkResult{}, err
	}
	if req.DryRun {
		res, err := c.d.Queue.PreviewBulk(ctx, a, sel)
		return admin.BulkDTO(res, true), err
	}
	res, err := c.d.Queue.Bulk(ctx, a, sel)
	if err != nil && res.Affected > 0 {
		err = fmt.Errorf("%w (after %d of the messages)", err, res.Affected)
	}
	return admin.BulkDTO(res, false), err
}

// Bulk implements admin.ClusterAPI. A real run of a destructive action (Confirm set) first asks every node
// what it would do: when the nodes together would affect more than Confirm messages nothing is done;
// otherwise each node runs it with its own count as its confirmation, so that no node acts on more than it
// reported, and a node that did not report is left alone and named.
func (c clusterAPI) Bulk(ctx context.Context, req admin.BulkRequest) (admin.BulkResult, error) {
	d := c.d
	a, _, err := req.Selection()
	if err != nil {
		return admin.BulkResult{}, err
	}
	out := admin.BulkResult{Action: string(a), DryRun: req.DryRun, Destructive: a.Destructive(), IDs: []string{}}
	list, err := d.nodeStore.List(ctx)
	if err != nil {
		// The registry is unreadable: this node's queue only, and the others named as not done.
		list = nil
		out.Failed = append(out.Failed, admin.NodeError{Node: "(other nodes)", Error: "node registry unreadable: " + err.Error()})
	}
	if !slices.ContainsFunc(list, func(n nodes.Node) bool { return c.local(n.Name) }) {
		list = append(list, nodes.Node{Name: d.cfg.Node})
	}
	var conf map[string]int
	if !req.DryRun && req.Confirm > 0 {
		preview := req
		preview.DryRun, preview.Confirm = true, 0
		conf = map[string]int{}
		total := 0
		for _, b := range c.bulkOnEach(ctx, list, preview, nil) {
			if b.err != nil {
				out.Failed = append(out.Failed, admin.NodeError{Node: b.node, Error: "not done: " + b.err.Error()})
				continue
			}
			total += b.res.Affected
			if b.res.Affected > 0 {
				conf[b.node] = b.res.Affected
			}
		}
		if total > req.Confirm {
			return admin.BulkResult{}, fmt.Errorf("%w: %d messages would be affected on the nodes, %d were confirmed", queue.ErrSelectionGrew, total, req.Confirm)
		}
	}
	for _, b := range c.bulkOnEach(ctx, list, req, conf) {
		if b.err != nil {
			msg := b.err.Error()
			if b.res.Affected > 0 {
				// Part of the node's selection was acted on: counted, and the node named with the error.
				out.Nodes = append(out.Nodes, admin.NodeBulkResult{Node: b.node, BulkResult: b.res})
				msg = fmt.Sprintf("stopped after %d of the messages: %s", b.res.Affected, msg)
			}
			out.Failed = append(out.Failed, admin.NodeError{Node: b.node, Error: msg})
			if b.res.Affected == 0 {
				continue
			}
		} else {
			out.Nodes = append(out.Nodes, admin.NodeBulkResult{Node: b.node, BulkResult: b.res})
		}
		out.Matched += b.res.Matched
		out.Affected += b.res.Affected
		out.Recipients += b.res.Recipients
		out.Gone += b.res.Gone
		out.InFlight += b.res.InFlight
		out.IDs = append(out.IDs, b.res.IDs...)
	}
	if len(out.IDs) > admin.MaxBulkIDs {
		out.IDs = out.IDs[:admin.MaxBulkIDs]
	}
	slices.SortFunc(out.Nodes, func(a, b admin.NodeBulkResult) int { return strings.Compare(a.Node, b.Node) })
	slices.SortFunc(out.Failed, func(a, b admin.NodeError) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}
