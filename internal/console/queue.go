package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/queue"
)

type queueFilter struct {
	Domain, Sender, State, Held, Error string
}

func (f queueFilter) Query() string {
	v := url.Values{}
	for k, s := range map[string]string{"domain": f.Domain, "sender": f.Sender, "state": f.State, "held": f.Held, "error": f.Error} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

type queueData struct {
	Filter    queueFilter
	FilterErr string
	Messages  []queueRow
	Truncated bool
	States    []string
	// Cluster is true when the page lists every node's queue (a Node column); Unreachable lists the nodes
	// whose queue could not be read.
	Cluster     bool
	Unreachable []admin.NodeError
}

// queueRow is one message of the list, with the node that holds it ("" for this node when the page lists
// this node alone) and Ref, the name the row's links and selection use (see msgRef).
type queueRow struct {
	queue.MessageInfo
	Node, Ref string
}

func (c *Console) queueList(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := queueData{
		Filter: queueFilter{Domain: strings.TrimSpace(q.Get("domain")), Sender: strings.TrimSpace(q.Get("sender")),
			State: q.Get("state"), Held: q.Get("held"), Error: strings.TrimSpace(q.Get("error"))},
		States: []string{"queued", "delivered", "failed", "quarantined"},
	}
	f := queue.Filter{Sender: d.Filter.Sender, Limit: maxListed + 1}
	var errs []string
	if d.Filter.Domain != "" {
		dom, err := address.ParseDomain(d.Filter.Domain)
		if err != nil {
			errs = append(errs, "domain: "+err.Error())
		} else {
			f.Domain = dom.String()
		}
	}
	if d.Filter.State != "" {
		if !slices.Contains(d.States, d.Filter.State) {
			errs = append(errs, fmt.Sprintf("state: unknown state %q", d.Filter.State))
		} else {
			f.State = d.Filter.State
		}
	}
	switch d.Filter.Held {
	case "":
	case "true":
		f.HeldOnly = true
	default:
		errs = append(errs, "held: want true or nothing")
	}
	code := http.StatusOK
	if len(errs) > 0 {
		d.FilterErr = strings.Join(errs, "; ")
		code = http.StatusBadRequest
	} else {
		rows, err := c.listQueue(r.Context(), f, &d)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		if d.Filter.Error != "" {
			needle := strings.ToLower(d.Filter.Error)
			rows = slices.DeleteFunc(rows, func(m queueRow) bool { return !strings.Contains(strings.ToLower(m.LastError), needle) })
		}
		if len(rows) > maxListed {
			rows, d.Truncated = rows[:maxListed], true
		}
		d.Messages = rows
	}
	c.render(w, r, s, code, "queue", "Queue", d)
}

// listQueue lists this node's queue, or every node's when the console knows the cluster.
func (c *Console) listQueue(ctx context.Context, f queue.Filter, d *queueData) ([]queueRow, error) {
	if c.opts.Cluster == nil {
		list, err := c.opts.Queue.List(ctx, f)
		rows := make([]queueRow, 0, len(list))
		for _, m := range list {
			rows = append(rows, queueRow{MessageInfo: m, Ref: m.ID})
		}
		return rows, err
	}
	cq, err := c.opts.Cluster.ListQueue(ctx, f)
	if err != nil {
		return nil, err
	}
	d.Cluster, d.Unreachable = true, cq.Unreachable
	self := c.selfNode(ctx)
	rows := make([]queueRow, 0, len(cq.Messages))
	for _, m := range cq.Messages {
		ref := m.ID
		if m.Node != self {
			ref = msgRef(m.Node, m.ID)
		}
		rows = append(rows, queueRow{MessageInfo: m.MessageInfo, Node: m.Node, Ref: ref})
	}
	return rows, nil
}

// selfNode is this node's name in the registry ("" when it cannot be read: every row then names its node).
func (c *Console) selfNode(ctx context.Context) string {
	if c.opts.Cluster == nil {
		return ""
	}
	l, err := c.opts.Cluster.Nodes(ctx)
	if err != nil {
		return ""
	}
	return l.Self
}

// getMessage returns the message ref names, from the node that holds it.
func (c *Console) getMessage(ctx context.Context, ref string) (queue.MessageDetail, error) {
	node, id := parseRef(ref)
	if node != "" && c.opts.Cluster != nil {
		return c.opts.Cluster.Message(ctx, node, id)
	}
	return c.opts.Queue.Get(ctx, id)
}

// doAction does a on the message ref names, on the node that holds it.
func (c *Console) doAction(ctx context.Context, a queue.Action, ref string) error {
	node, id := parseRef(ref)
	if node != "" && c.opts.Cluster != nil {
		return c.opts.Cluster.Act(ctx, node, id, a)
	}
	return a.Do(ctx, c.opts.Queue, id)
}

// checkRef checks a message reference: an id, and a node name when it has one.
func checkRef(ref string) error {
	node, id := parseRef(ref)
	if strings.Contains(ref, "@") && node == "" {
		return fmt.Errorf("invalid message reference %q: no node after '@'", ref)
	}
	return checkID(id)
}

type messageData struct {
	M       queue.MessageDetail
	Actions []queue.Action
	// Node is the node holding the message when it is not this one; Ref names the message in links.
	Node, Ref string
}

func (c *Console) queueDetail(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	node := r.URL.Query().Get("node")
	ref := msgRef(node, id)
	if err := checkRef(ref); err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	m, err := c.getMessage(r.Context(), ref)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	title := "Message " + id
	if node != "" {
		title += " on " + node
	}
	c.render(w, r, s, http.StatusOK, "message", title, messageData{M: m, Actions: queue.Actions(), Node: node, Ref: ref})
}

// checkID accepts what looks like a queue id; the queue decides whether it exists.
func checkID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("invalid message id %q", id)
	}
	for _, ch := range id {
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '-' || ch == '_' || ch == '.') {
			return fmt.Errorf("invalid message id %q", id)
		}
	}
	return nil
}

// affected is what an action would do to one message.
type affected struct {
	ID, From string
	Domains  []string
	queue.Effect
}

type confirmData struct {
	Action   queue.Action
	Verb     string
	Explain  string
	Messages []affected
	// Count is the messages the action changes, Rcpts their recipients; Missing lists unknown ids.
	Count, Rcpts int
	Missing      []string
	IDs          []string
	Back         string
}

func (c *Console) queueConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	action, err := queue.ParseAction(q.Get("action"))
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	ids := q["id"]
	if len(ids) == 0 {
		c.renderError(w, r, s, http.StatusBadRequest, "No message selected: tick the messages first.")
		return
	}
	if len(ids) > maxSelected {
		c.renderError(w, r, s, http.StatusBadRequest, fmt.Sprintf("At most %d messages at once.", maxSelected))
		return
	}
	d := confirmData{Action: action, Verb: action.Verb(), Explain: action.Explain(), Back: "/queue"}
	if len(ids) == 1 {
		d.Back = messageURL(ids[0])
	}
	for _, id := range ids {
		if err := checkRef(id); err != nil {
			c.renderError(w, r, s, http.StatusBadRequest, err.Error())
			return
		}
		if slices.Contains(d.IDs, id) {
			continue
		}
		m, err := c.getMessage(r.Context(), id)
		if errors.Is(err, queue.ErrNotFound) {
			d.Missing = append(d.Missing, id)
			continue
		}
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		a := affected{ID: id, From: m.From, Domains: m.Domains, Effect: action.Preview(m.MessageInfo)}
		if a.Skip == "" {
			d.Count++
			d.Rcpts += a.Rcpts
		}
		d.IDs = append(d.IDs, id)
		d.Messages = append(d.Messages, a)
	}
	c.render(w, r, s, http.StatusOK, "confirm", d.Verb+" messages", d)
}

func (c *Console) queueAction(w http.ResponseWriter, r *http.Request, s *session) {
	action, err := queue.ParseAction(r.PostForm.Get("action"))
	if err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 || len(ids) > maxSelected {
		c.renderError(w, r, s, http.StatusBadRequest, "No message (or too many) selected.")
		return
	}
	var done int
	var problems []string
	for _, id := range ids {
		if err := checkRef(id); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if err := c.doAction(r.Context(), action, id); err != nil {
			if !errors.Is(err, queue.ErrNotFound) {
				node, msgID := parseRef(id)
				c.log.Error("console: queue action", "action", action, "msg_id", msgID, "node", node, "err", err)
			}
			problems = append(problems, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		node, msgID := parseRef(id)
		c.log.Info("console: queue "+string(action), "msg_id", msgID, "node", node, "ip", remoteIP(r))
		done++
	}
	msg := fmt.Sprintf("%s: done for %d of %d message(s).", action.Verb(), done, len(ids))
	if len(problems) > 0 {
		msg += " Failed: " + strings.Join(problems, "; ")
	}
	to := "/queue"
	if len(ids) == 1 && action != queue.ActionDelete && checkRef(ids[0]) == nil {
		to = messageURL(ids[0])
	}
	c.done(w, r, s, to, msg)
}

// messageURL is the console page of the message ref names.
func messageURL(ref string) string {
	node, id := parseRef(ref)
	u := "/queue/" + url.PathEscape(id)
	if node != "" {
		u += "?node=" + url.QueryEscape(node)
	}
	return u
}
