package console

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtastscache"
	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlsreport"
)

// Limits of what one page shows.
const (
	maxListed     = 500
	maxSelected   = 500
	maxSentShown  = 200
	explainBudget = 15 * time.Second
)

// fail renders err from a collaborator with the status it deserves and logs server-side failures.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, queue.ErrNotFound), errors.Is(err, mtastscache.ErrNotCached), errors.Is(err, tlsreport.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, address.ErrSyntax), errors.Is(err, settings.ErrUnknownKey), errors.Is(err, settings.ErrInvalidValue):
		code = http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	if code == http.StatusInternalServerError {
		c.log.Error("console: request failed", "path", r.URL.Path, "err", err)
	}
	c.renderError(w, r, s, code, err.Error())
}
