package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/mxgate/mxgate/internal/queue"
)

type traceData struct {
	Query     string
	Available bool
	Searched  bool
	Messages  []queue.Traced
	// Partial says why only this node's messages were searched.
	Partial string
}

// tracePage finds messages that left the queue (delivered, bounced) by queue ID, Message-ID or address.
func (c *Console) tracePage(w http.ResponseWriter, r *http.Request, s *session) {
	d := traceData{Query: strings.TrimSpace(r.URL.Query().Get("q")), Available: c.opts.Trace != nil}
	if d.Query != "" && d.Available {
		msgs, err := c.opts.Trace(r.Context(), queue.TraceQuery{Any: d.Query, Limit: 50})
		if pe := (*queue.PartialTraceError)(nil); errors.As(err, &pe) {
			d.Partial, err = pe.Error(), nil
		}
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		d.Searched, d.Messages = true, msgs
	}
	c.render(w, r, s, http.StatusOK, "trace", "Message tracking", d)
}
