package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/queue"
)

// maxBulkListed bounds the message ids the bulk confirmation page lists.
const maxBulkListed = 50

// bulkData is the confirmation page of an action on every message a selection matches: what the queue says
// the action would do, and the form that does it.
type bulkData struct {
	Action, Verb, Explain string
	Destructive           bool
	// Req is the selection as submitted, carried into the confirming form.
	Req admin.BulkRequest
	// Describe says in words what is selected.
	Describe string
	Result   admin.BulkResult
	// Listed are the first affected messages; More counts the others.
	Listed []bulkListed
	More   int
	// AllNodes is true when the action is on every node's queue (the console knows the cluster); Failed
	// then names the nodes that could not say what they would do.
	AllNodes bool
	Failed   []admin.NodeError
}

// bulkListed is an affected message: its id, and its reference in the console's links (with its node when
// another node holds it).
type bulkListed struct{ ID, Node, Ref string }

// bulkRequest reads the selection of a bulk action from form values.
func bulkRequest(v url.Values) admin.BulkRequest {
	return admin.BulkRequest{Action: v.Get("action"), All: v.Get("all") == "true", Domain: v.Get("domain"),
		ResultType: v.Get("result_type"), Held: v.Get("held") == "true", OlderThan: v.Get("older_than")}
}

func describe(r admin.BulkRequest) string {
	if r.All {
		return "every message in the queue"
	}
	s := "messages"
	if r.Held {
		s = "held messages"
	}
	if r.Domain != "" {
		s += " with a recipient in " + r.Domain
	}
	if r.ResultType != "" {
		s += " whose last attempt failed with " + r.ResultType
	}
	if r.OlderThan != "" {
		s += " received more than " + r.OlderThan + " ago"
	}
	return s
}

// queueBulkConfirm shows what a bulk action would do (the queue's own preview) and asks to confirm it.
func (c *Console) queueBulkConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	req := bulkRequest(r.URL.Query())
	a, sel, err := req.Selection()
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	verb, explain := a.Verb(), a.Explain()
	res, err := c.previewBulk(r.Context(), req, a, sel)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := bulkData{Action: string(a), Verb: verb, Explain: explain, Destructive: a.Destructive(), Req: req,
		Describe: describe(req), Result: res, AllNodes: c.opts.Cluster != nil, Failed: res.Failed}
	if d.AllNodes {
		self := c.selfNode(r.Context())
		for _, n := range res.Nodes {
			for _, id := range n.IDs {
				ref := id
				if n.Node != self {
					ref = msgRef(n.Node, id)
				}
				d.Listed = append(d.Listed, bulkListed{ID: id, Node: n.Node, Ref: ref})
			}
		}
	} else {
		for _, id := range res.IDs {
			d.Listed = append(d.Listed, bulkListed{ID: id, Ref: id})
		}
	}
	if len(d.Listed) > maxBulkListed {
		d.Listed, d.More = d.Listed[:maxBulkListed], len(d.Listed)-maxBulkListed
	}
	c.render(w, r, s, http.StatusOK, "bulk", verb+" "+d.Describe, d)
}

// previewBulk says what a bulk action would do: on every node when the console knows the cluster, on this
// node's queue otherwise.
func (c *Console) previewBulk(ctx context.Context, req admin.BulkRequest, a queue.Action, sel queue.Selection) (admin.BulkResult, error) {
	if c.opts.Cluster != nil {
		req.DryRun, req.AllNodes = true, true
		return c.opts.Cluster.Bulk(ctx, req)
	}
	res, err := c.opts.Queue.PreviewBulk(ctx, a, sel)
	return admin.BulkDTO(res, true), err
}

// runBulk does a confirmed bulk action: on every node when the console knows the cluster, on this node's
// queue otherwise.
func (c *Console) runBulk(ctx context.Context, req admin.BulkRequest, a queue.Action, sel queue.Selection) (admin.BulkResult, error) {
	if c.opts.Cluster != nil {
		req.AllNodes = true
		return c.opts.Cluster.Bulk(ctx, req)
	}
	res, err := c.opts.Queue.Bulk(ctx, a, sel)
	return admin.BulkDTO(res, false), err
}

// queueBulk runs a confirmed bulk action. The count confirmed is a maximum: when more messages match by
// now, nothing is done and the operator reviews again.
func (c *Console) queueBulk(w http.ResponseWriter, r *http.Request, s *session) {
	req := bulkRequest(r.PostForm)
	n, err := strconv.Atoi(r.PostForm.Get("confirm"))
	if err != nil || n < 1 {
		c.renderError(w, r, s, http.StatusBadRequest, "No confirmed count: review the action first.")
		return
	}
	req.Confirm = n
	a, sel, err := req.Selection()
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	verb := a.Verb()
	res, err := c.runBulk(r.Context(), req, a, sel)
	if errors.Is(err, queue.ErrSelectionGrew) {
		c.renderError(w, r, s, http.StatusConflict, fmt.Sprintf("Nothing was done: %v. Review the action again.", err))
		return
	}
	c.log.Info("console: queue bulk "+string(a), "matched", res.Matched, "affected", res.Affected, "gone", res.Gone,
		"in_flight", res.InFlight, "ip", remoteIP(r))
	msg := fmt.Sprintf("%s: done for %d message(s), %d recipient(s), of %s.", verb, res.Affected, res.Recipients, describe(req))
	if res.Gone > 0 {
		msg += fmt.Sprintf(" %d had already left the queue.", res.Gone)
	}
	if res.InFlight > 0 {
		msg += fmt.Sprintf(" %d had a delivery in flight and were left alone; try again once it is recorded.", res.InFlight)
	}
	for _, f := range res.Failed {
		// Never counted as done: each node that did not do it is named.
		msg += fmt.Sprintf(" Not done on node %s: %s.", f.Node, f.Error)
	}
	if err != nil {
		c.log.Error("console: queue bulk", "action", string(a), "err", err)
		msg += " Stopped: " + err.Error()
	}
	c.done(w, r, s, "/queue", msg)
}
