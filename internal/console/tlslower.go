package console

import (
	"context"
	"net/http"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/settings"
)

// tlsStrength orders TLS levels from the weakest; a rule value's first word is its level (a rule may carry
// options after it). Unknown levels rank as the strongest, so that a change away from one always asks.
func tlsStrength(value string) int {
	level, _, _ := strings.Cut(strings.TrimSpace(value), " ")
	switch level {
	case "none":
		return 0
	case "opportunistic":
		return 1
	case "required":
		return 2
	case "required-verify":
		return 3
	case "dane":
		// Opportunistic DANE falls back to unverified TLS without TLSA records: no stronger than required.
		return 2
	case "dane-only":
		return 4
	}
	return 5
}

// tlsLowering says whether staging value (or, with unset, removing the rule) for the domain rule key makes
// the domain's TLS weaker than what is in force or staged now, and describes both.
type tlsLowering struct {
	Key, Domain string
	// From is what the domain gets now (the committed or staged rule, or the MTA-STS policy or default that
	// applies without a rule); To is what the change would give.
	From, To string
	Unset    bool
	Value    string
}

func (c *Console) lowersTLS(ctx context.Context, key, value string, unset bool) (tlsLowering, bool) {
	if !strings.HasPrefix(key, settings.DomainPrefix) || !strings.HasSuffix(key, ".TLS") {
		return tlsLowering{}, false
	}
	ck, _, err := settings.Canonical(key, "none")
	if err != nil {
		return tlsLowering{}, false
	}
	dom := strings.TrimSuffix(strings.TrimPrefix(ck, settings.DomainPrefix), ".TLS")
	cur := c.opts.Settings.Current()
	// What the domain gets without a rule: MTA-STS enforce from the cache, or opportunistic TLS.
	without := "opportunistic"
	if cur.Bool("Sender.EnableMTASTS") {
		if d, err := address.ParseDomain(dom); err == nil {
			if e, err := c.opts.STS.Show(ctx, d); err == nil && e.Mode == mtasts.ModeEnforce {
				without = "required-verify (MTA-STS enforce)"
			}
		}
	}
	from, strongest := without, tlsStrength(without)
	if v, ok := cur.Values[ck]; ok {
		from, strongest = v, tlsStrength(v)
	}
	if changes, err := c.opts.Settings.Diff(ctx); err == nil {
		for _, ch := range changes {
			if ch.Key == ck && ch.NewSet && tlsStrength(ch.New) > strongest {
				from, strongest = ch.New+" (staged)", tlsStrength(ch.New)
			}
		}
	}
	to := value
	if unset {
		to = without
	}
	l := tlsLowering{Key: ck, Domain: dom, From: from, To: to, Unset: unset, Value: value}
	return l, tlsStrength(to) < strongest
}

// confirmLowering renders the confirmation page of a change that weakens a domain's TLS, unless the form
// carries the confirmation already. It reports whether the change may go on.
func (c *Console) confirmLowering(w http.ResponseWriter, r *http.Request, s *session, key, value string, unset bool) bool {
	l, lowers := c.lowersTLS(r.Context(), key, value, unset)
	if !lowers || r.PostForm.Get("confirm") == "lower" {
		return true
	}
	c.render(w, r, s, http.StatusOK, "lowertls", "Lower the TLS of "+l.Domain+"?", l)
	return false
}

// dkimRecord fills the reports page's DKIM record, bounded like an explanation.
func (c *Console) dkimRecord(ctx context.Context, d *reportsData) {
	if c.opts.DKIM == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, explainBudget)
	defer cancel()
	rec, err := c.opts.DKIM(ctx)
	if err != nil {
		d.DKIMErr = err.Error()
		return
	}
	d.DKIM = &rec
}
