package delivery

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/queue"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// channel is what the session to a host has proven before AUTH.
type channel struct {
	tls      bool // the session runs over TLS
	verified bool // and the certificate chains to a trusted root, is in date and names the host
}

// authenticate sends AUTH (RFC 4954) with the route's credentials when the channel is as strong as the
// route's AuthMinTLS asks. Otherwise, or when AUTH fails, it returns the outcome for the pending recipients
// and false: the session must end without a transaction. The password never appears in an outcome.
func authenticate(c *smtp.Client, t target, ch channel) (queue.Result, bool) {
	r := t.auth
	need := r.AuthMinTLS
	if need == "" {
		need = tlspolicy.LevelRequiredVerify
	}
	var weak string
	switch {
	case need == tlspolicy.LevelNone:
	case !ch.tls:
		weak = "the session to " + t.name + " is not encrypted"
	case need == tlspolicy.LevelRequiredVerify && !ch.verified:
		weak = "the certificate of " + t.name + " was not verified"
	}
	if weak != "" {
		// A refusal of ours, never the relay's: deferred, so that a fixed certificate or route lets it through.
		res := deferred(451, "4.7.0", fmt.Sprintf("AUTH not sent: %s (route auth_min_tls = %q)", weak, need))
		res.RemoteMTA = t.name
		return res, false
	}
	ok, params := c.Extension("AUTH")
	if !ok {
		res := deferred(451, "4.7.0", fmt.Sprintf("%s does not offer AUTH, and the route has auth_user", t.name))
		res.RemoteMTA = t.name
		return res, false
	}
	var client sasl.Client
	for _, m := range strings.Fields(strings.ToUpper(params)) {
		if m == sasl.Plain {
			client = sasl.NewPlainClient("", r.AuthUser, r.AuthPassword)
			break
		}
		if m == sasl.Login && client == nil {
			client = sasl.NewLoginClient(r.AuthUser, r.AuthPassword)
		}
	}
	if client == nil {
		res := deferred(451, "4.7.0", fmt.Sprintf("%s offers neither AUTH PLAIN nor LOGIN (it offers %s)", t.name, params))
		res.RemoteMTA = t.name
		return res, false
	}
	if err := c.Auth(client); err != nil {
		res := replyResult(t.name, err, "AUTH as "+r.AuthUser)
		var se *smtp.SMTPError
		if errors.As(err, &se) && res.Outcome == queue.Failed {
			// Rejected credentials are a configuration problem of ours, not the recipients': defer so that
			// mail waits for the fix instead of bouncing.
			res.Outcome = queue.Deferred
		}
		return res, false
	}
	return queue.Result{}, true
}
