package console

import (
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
	Result   queue.BulkResult
	// Listed are the first affected ids; More counts the others.
	Listed []string
	More   int
}

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
	res, err := c.opts.Queue.PreviewBulk(r.Context(), a, sel)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := bulkData{Action: string(a), Verb: verb, Explain: explain, Destructive: a.Destructive(), Req: req,
		Describe: describe(req), Result: res, Listed: res.IDs}
	if len(d.Listed) > maxBulkListed {
		d.Listed, d.More = d.Listed[:maxBulkListed], len(d.Listed)-maxBulkListed
	}
	c.render(w, r, s, http.StatusOK, "bulk", verb+" "+d.Describe, d)
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
	res, err := c.opts.Queue.Bulk(r.Context(), a, sel)
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
	if err != nil {
		c.log.Error("console: queue bulk", "action", string(a), "err", err)
		msg += " Stopped: " + err.Error()
	}
	c.done(w, r, s, "/queue", msg)
}
