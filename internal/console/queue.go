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
	Messages  []queue.MessageInfo
	Truncated bool
	States    []string
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
		list, err := c.opts.Queue.List(r.Context(), f)
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		if d.Filter.Error != "" {
			needle := strings.ToLower(d.Filter.Error)
			list = slices.DeleteFunc(list, func(m queue.MessageInfo) bool { return !strings.Contains(strings.ToLower(m.LastError), needle) })
		}
		if len(list) > maxListed {
			list, d.Truncated = list[:maxListed], true
		}
		d.Messages = list
	}
	c.render(w, r, s, code, "queue", "Queue", d)
}

type messageData struct {
	M       queue.MessageDetail
	Actions []string
}

func (c *Console) queueDetail(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		c.renderError(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	m, err := c.opts.Queue.Get(r.Context(), id)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "message", "Message "+id, messageData{M: m, Actions: queueActions()})
}

func queueActions() []string { return []string{"retry", "hold", "release", "bounce", "delete"} }

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
	// Rcpts is how many recipients the action changes; Skip says why the action does nothing here.
	Rcpts int
	Skip  string
}

type confirmData struct {
	Action, Verb, Explain string
	Messages              []affected
	// Count is the messages the action changes, Rcpts their recipients; Missing lists unknown ids.
	Count, Rcpts int
	Missing      []string
	IDs          []string
	Back         string
}

func actionText(action string) (verb, explain string, ok bool) {
	switch action {
	case "retry":
		return "Retry", "Every queued recipient becomes due now; the scheduler delivers at once.", true
	case "hold":
		return "Hold", "No further delivery is attempted until the message is released; a delivery in progress finishes.", true
	case "release":
		return "Release", "Held messages go back to the queue and are delivered when due.", true
	case "bounce":
		return "Bounce", "Every recipient not yet delivered fails now with 5.0.0, and the sender gets a bounce (DSN) as its NOTIFY asks.", true
	case "delete":
		return "Delete", "The message, its body and its history are removed without notifying anyone. Recipients not yet delivered will never get it.", true
	}
	return "", "", false
}

func (c *Console) queueConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	action := q.Get("action")
	verb, explain, ok := actionText(action)
	if !ok {
		c.renderError(w, r, s, http.StatusBadRequest, fmt.Sprintf("unknown action %q", action))
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
	d := confirmData{Action: action, Verb: verb, Explain: explain, Back: "/queue"}
	if len(ids) == 1 {
		d.Back = "/queue/" + url.PathEscape(ids[0])
	}
	for _, id := range ids {
		if err := checkID(id); err != nil {
			c.renderError(w, r, s, http.StatusBadRequest, err.Error())
			return
		}
		if slices.Contains(d.IDs, id) {
			continue
		}
		m, err := c.opts.Queue.Get(r.Context(), id)
		if errors.Is(err, queue.ErrNotFound) {
			d.Missing = append(d.Missing, id)
			continue
		}
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		a := affected{ID: id, From: m.From, Domains: m.Domains}
		switch action {
		case "retry":
			a.Rcpts = m.Queued
			if m.Queued == 0 {
				a.Skip = "no queued recipient"
			} else if m.Held {
				a.Skip = "held: release it to deliver"
			}
		case "hold":
			a.Rcpts = m.Queued
			if m.Held {
				a.Skip = "already held"
			}
		case "release":
			a.Rcpts = m.Queued
			if !m.Held {
				a.Skip = "not held"
			}
		case "bounce":
			a.Rcpts = m.Queued + m.Quarantined
			if a.Rcpts == 0 {
				a.Skip = "no recipient left to bounce"
			}
		case "delete":
			a.Rcpts = m.Queued + m.Quarantined
		}
		if a.Skip == "" {
			d.Count++
			d.Rcpts += a.Rcpts
		}
		d.IDs = append(d.IDs, id)
		d.Messages = append(d.Messages, a)
	}
	c.render(w, r, s, http.StatusOK, "confirm", verb+" messages", d)
}

func (c *Console) queueAction(w http.ResponseWriter, r *http.Request, s *session) {
	action := r.PostForm.Get("action")
	verb, _, ok := actionText(action)
	if !ok {
		c.renderError(w, r, s, http.StatusBadRequest, fmt.Sprintf("unknown action %q", action))
		return
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 || len(ids) > maxSelected {
		c.renderError(w, r, s, http.StatusBadRequest, "No message (or too many) selected.")
		return
	}
	do := map[string]func(context.Context, string) error{
		"retry": c.opts.Queue.Retry, "hold": c.opts.Queue.Hold, "release": c.opts.Queue.Release,
		"bounce": c.opts.Queue.Bounce, "delete": c.opts.Queue.Delete,
	}[action]
	var done int
	var problems []string
	for _, id := range ids {
		if err := checkID(id); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if err := do(r.Context(), id); err != nil {
			if !errors.Is(err, queue.ErrNotFound) {
				c.log.Error("console: queue action", "action", action, "msg_id", id, "err", err)
			}
			problems = append(problems, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		c.log.Info("console: queue "+action, "msg_id", id, "ip", remoteIP(r))
		done++
	}
	msg := fmt.Sprintf("%s: done for %d of %d message(s).", verb, done, len(ids))
	if len(problems) > 0 {
		msg += " Failed: " + strings.Join(problems, "; ")
	}
	to := "/queue"
	if len(ids) == 1 && action != "delete" && checkID(ids[0]) == nil {
		to = "/queue/" + url.PathEscape(ids[0])
	}
	c.done(w, r, s, to, msg)
}
