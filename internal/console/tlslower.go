package console

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/mtasts"
	"github.com/mxgate/mxgate/internal/settings"
	"github.com/mxgate/mxgate/internal/tlspolicy"
)

// tlsRank orders levels as the TLS decision point does (tlspolicy.Levels, weakest first).
func tlsRank(l tlspolicy.Level) int { return slices.Index(tlspolicy.Levels(), l) }

// tlsLowering describes a change that makes a domain's TLS weaker.
type tlsLowering struct {
	Key, Domain string
	// From is what the domain gets now (the committed or staged rule, or the MTA-STS policy or default that
	// applies without a rule); To is what the change would give.
	From, To string
	Unset    bool
	Value    string
	// ClearText: the change allows mail in clear text (level none).
	ClearText bool
}

// lowersTLS says whether staging value (or, with unset, removing the rule) for the domain rule key makes the
// domain's TLS weaker than what is in force or staged now. It follows the decision point: a rule only
// raises the level of the domain's MTA-STS policy, unless it says "override", and then it replaces it.
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
	without, withoutText := tlspolicy.LevelOpportunistic, "opportunistic (no rule)"
	if cur.Bool("Sender.EnableMTASTS") {
		if d, err := address.ParseDomain(dom); err == nil {
			if e, err := c.opts.STS.Show(ctx, d); err == nil && e.Mode == mtasts.ModeEnforce {
				without, withoutText = tlspolicy.LevelRequiredVerify, "required-verify (MTA-STS enforce)"
			}
		}
	}
	// effective is the rank of what a rule gives; an unparsable value ranks highest, so that leaving it asks.
	effective := func(v string) int {
		r, err := tlspolicy.ParseRule(v)
		if err != nil {
			return len(tlspolicy.Levels())
		}
		if r.Override {
			return tlsRank(r.Level)
		}
		return max(tlsRank(r.Level), tlsRank(without))
	}
	from, strongest := withoutText, tlsRank(without)
	if v, ok := cur.Values[ck]; ok {
		from, strongest = v, effective(v)
	}
	if changes, err := c.opts.Settings.Diff(ctx); err == nil {
		for _, ch := range changes {
			if ch.Key == ck && ch.NewSet && effective(ch.New) > strongest {
				from, strongest = ch.New+" (staged)", effective(ch.New)
			}
		}
	}
	to, rank := value, 0
	if unset {
		to, rank = withoutText, tlsRank(without)
	} else {
		rank = effective(value)
	}
	clear := !unset && rank == tlsRank(tlspolicy.LevelNone)
	return tlsLowering{Key: ck, Domain: dom, From: from, To: to, Unset: unset, Value: value, ClearText: clear}, rank < strongest
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
