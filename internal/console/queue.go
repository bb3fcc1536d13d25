package console

import (
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
	Actions []queue.Action
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
	c.render(w, r, s, http.StatusOK, "message", "Message "+id, messageData{M: m, Actions: queue.Actions()})
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
		if err := checkID(id); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if err := action.Do(r.Context(), c.opts.Queue, id); err != nil {
			if !errors.Is(err, queue.ErrNotFound) {
				c.log.Error("console: queue action", "action", action, "msg_id", id, "err", err)
			}
			problems = append(problems, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		c.log.Info("console: queue "+string(action), "msg_id", id, "ip", remoteIP(r))
		done++
	}
	msg := fmt.Sprintf("%s: done for %d of %d message(s).", action.Verb(), done, len(ids))
	if len(problems) > 0 {
		msg += " Failed: " + strings.Join(problems, "; ")
	}
	to := "/queue"
	if len(ids) == 1 && action != queue.ActionDelete && checkID(ids[0]) == nil {
		to = "/queue/" + url.PathEscape(ids[0])
	}
	c.done(w, r, s, to, msg)
}
