package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mxgate/mxgate/internal/queue"
)

// TraceFunc finds finished messages in the queue's archive; (*queue.Queue).Trace implements it.
type TraceFunc func(ctx context.Context, q queue.TraceQuery) ([]queue.Traced, error)

// Traced is one message of GET /api/v1/trace: a message that left the queue (delivered, bounced), with each
// recipient's final state and every attempt.
type Traced struct {
	// Node is the cluster node that handled the message (cluster mode only).
	Node       string      `json:"node,omitempty"`
	ID         string      `json:"id"`
	MessageID  string      `json:"message_id,omitempty"`
	From       string      `json:"from"`
	Size       int64       `json:"size"`
	ClientIP   string      `json:"client_ip,omitempty"`
	Received   time.Time   `json:"received"`
	Finished   time.Time   `json:"finished"`
	Report     bool        `json:"report,omitempty"`
	DSN        bool        `json:"dsn,omitempty"`
	Recipients []Recipient `json:"recipients"`
	Timeline   []Attempt   `json:"timeline"`
}

// TracePath is the query of GET /api/v1/trace: q matches a queue ID, a Message-ID, the sender or a recipient;
// id, message_id, from and to match one field each; limit caps the answer (default 50, newest first).
func TracePath(tq queue.TraceQuery) string {
	v := url.Values{}
	for k, s := range map[string]string{"q": tq.Any, "id": tq.ID, "message_id": tq.MessageID, "from": tq.Sender, "to": tq.Recipient} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if tq.Limit > 0 {
		v.Set("limit", strconv.Itoa(tq.Limit))
	}
	return "/api/v1/trace?" + v.Encode()
}

func (s *Server) traceRoutes() {
	s.mux.HandleFunc("GET /api/v1/trace", s.trace)
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	if s.opts.Trace == nil {
		writeError(w, http.StatusNotImplemented, "message tracking is not available on this node")
		return
	}
	qv := r.URL.Query()
	tq := queue.TraceQuery{Any: qv.Get("q"), ID: qv.Get("id"), MessageID: qv.Get("message_id"), Sender: qv.Get("from"), Recipient: qv.Get("to")}
	if l := qv.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit: want a number from 1 to 1000")
			return
		}
		tq.Limit = n
	}
	found, err := s.opts.Trace(r.Context(), tq)
	if errors.Is(err, queue.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "give q (an ID, Message-ID or address), id, message_id, from or to")
		return
	}
	if pe := (*queue.PartialTraceError)(nil); errors.As(err, &pe) {
		// This node's matches, without the other nodes': said in a header, or as the error when there are
		// none (an empty list would read as "no such message").
		if len(found) == 0 {
			writeError(w, http.StatusServiceUnavailable, pe.Error())
			return
		}
		w.Header().Set("X-Mxgate-Partial", pe.Error())
		err = nil
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]Traced, 0, len(found))
	for _, t := range found {
		tr := Traced{Node: t.Node, ID: t.ID, MessageID: t.MessageID, From: t.From, Size: t.Size, ClientIP: t.ClientIP,
			Received: utc(t.Received), Finished: utc(t.Finished),
			Report: t.Report, DSN: t.DSN, Recipients: []Recipient{}, Timeline: []Attempt{}}
		for _, rc := range t.Recipients {
			tr.Recipients = append(tr.Recipients, recipientDTO(rc))
		}
		for _, a := range t.Attempts {
			tr.Timeline = append(tr.Timeline, attemptDTO(a))
		}
		out = append(out, tr)
	}
	writeJSON(w, http.StatusOK, out)
}
