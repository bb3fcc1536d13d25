package diag

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/mtasts"
)

// Text writes the report for people: aligned fields, one section per step, and a closing verdict.
func (r *STSReport) Text(w io.Writer) error {
	var b textBuilder
	b.line("MTA-STS lookup for %s", r.Domain)
	b.blank()
	writeRecord(&b, r.Record)
	if r.Policy != nil {
		b.blank()
		writePolicy(&b, r.Policy)
	}
	if r.PolicyHost != nil {
		b.blank()
		b.line("Policy host %s", r.PolicyHost.Host)
		if r.PolicyHost.Error != "" {
			b.field("error", r.PolicyHost.Error)
		}
		if r.PolicyHost.TLS != nil {
			writeTLS(&b, r.PolicyHost.TLS)
		}
	}
	b.blank()
	b.line("MX hosts (live DNS)")
	if r.MXError != "" {
		b.field("error", r.MXError)
	}
	uncovered := 0
	for _, m := range r.MX {
		name := m.Host
		if m.Implicit {
			name += " (implicit MX)"
		}
		note := string(m.Policy)
		if m.Policy == NotCovered {
			uncovered++
			note = "NOT COVERED: under enforce this host never gets mail"
		}
		b.line("  %-5d %-32s %s", m.Pref, name, note)
	}
	if r.Cache != nil {
		b.blank()
		b.line("Cached policy (the gateway's, what delivery applies when the live lookup fails or shows the same id)")
		switch c := r.Cache; {
		case c.Error != "":
			b.field("cache", "not available: "+c.Error)
		case c.Entry == nil:
			b.field("cache", "none cached")
		default:
			b.field("id", c.Entry.ID)
			b.field("mode", string(c.Entry.Mode))
			b.field("mx", strings.Join(c.Entry.MX, ", "))
			exp := c.Entry.Expires.UTC().Format(time.RFC3339)
			if c.Entry.Expired {
				exp += " (expired: no longer applied)"
			}
			b.field("expires", exp)
		}
	}
	b.blank()
	cached := r.Cache.usable()
	switch {
	case r.Blocked():
		b.line("BLOCKED: the enforce policy covers none of the MX hosts; mail to %s cannot be delivered", r.Domain)
	case r.MXTemporary:
		b.line("UNKNOWN: the MX lookup failed temporarily; delivery defers until DNS answers")
	case r.Record.Temporary && cached != nil:
		b.line("Result: the _mta-sts TXT lookup failed temporarily; delivery applies the cached %s policy id %s (expires %s)",
			cached.Mode, cached.ID, cached.Expires.UTC().Format(time.RFC3339))
	case r.Record.Temporary:
		why := "nothing is cached"
		if r.Cache == nil || r.Cache.Error != "" {
			why = "the gateway's cache could not be read"
		}
		b.line("UNKNOWN: the _mta-sts TXT lookup failed temporarily and %s; this is not \"no policy\": delivery defers until DNS answers", why)
	case (r.Policy == nil || !r.Policy.Fetched) && cached != nil:
		b.line("Result: no live MTA-STS policy, but the cached %s policy id %s stays in force until %s",
			cached.Mode, cached.ID, cached.Expires.UTC().Format(time.RFC3339))
	case r.Policy == nil || !r.Policy.Fetched:
		b.line("Result: no MTA-STS policy applies; mail goes with opportunistic TLS")
	case r.Policy.Mode == mtasts.ModeNone:
		b.line("Result: policy mode none: no policy in force; mail goes with opportunistic TLS")
	case uncovered > 0:
		b.line("Result: policy %s; %d of %d MX hosts not covered by the policy", r.Policy.Mode, uncovered, len(r.MX))
	default:
		b.line("Result: policy %s; every MX host is covered", r.Policy.Mode)
	}
	return b.writeTo(w)
}

// Text writes the report for people: the policy, then one block per MX host, and a closing verdict.
func (r *MXTestReport) Text(w io.Writer) error {
	var b textBuilder
	b.line("MX test for %s", r.Domain)
	switch {
	case r.Policy != nil && r.Policy.Fetched:
		summary := fmt.Sprintf("%s (id %s), mx %s", r.Policy.Mode, r.Record.ID, strings.Join(r.Policy.MX, ", "))
		if r.Policy.Mode != mtasts.ModeEnforce && len(r.Policy.MX) > 0 {
			summary += "; decisions below are what enforce mode would do"
		}
		b.field("policy", summary)
	case r.Policy != nil:
		b.field("policy", fmt.Sprintf("none: %s: %s", r.Policy.ResultType, r.Policy.Error))
	case r.Record.Temporary:
		b.field("policy", "UNKNOWN (temporary DNS failure, not \"no policy\"): "+r.Record.Error)
	default:
		b.field("policy", "none: "+r.Record.Error)
	}
	if r.MXError != "" {
		b.field("mx error", r.MXError)
	}
	deliver := 0
	for _, h := range r.Hosts {
		b.hostHeading(h.Pref, h.Host, h.Implicit)
		if h.Address != "" {
			b.field("address", fmt.Sprintf("%s (of %s)", h.Address, strings.Join(h.Addresses, ", ")))
		}
		if h.Banner != "" {
			b.field("banner", h.Banner)
		}
		if h.Error != "" {
			b.field("error", h.Error)
		}
		if h.Banner != "" && h.Error == "" {
			starttls := "not offered"
			if h.STARTTLS {
				starttls = "offered"
			}
			b.field("STARTTLS", starttls)
		}
		if h.STARTTLSError != "" {
			b.field("TLS error", h.STARTTLSError)
		}
		if h.TLS != nil {
			writeTLS(&b, h.TLS)
		}
		b.field("policy", string(h.Policy))
		if e := h.Enforce; e != nil {
			v := string(e.Action)
			if e.Action == Deliver {
				deliver++
			}
			if e.Action == Refuse {
				v = "REFUSE " + string(e.ResultType)
				if e.ReasonCode != "" {
					v += " (" + e.ReasonCode + ")"
				}
			}
			b.field("enforce", v)
			if e.Action == Refuse && e.Detail != "" && (h.TLS == nil || h.TLS.Detail != e.Detail) {
				b.field("", e.Detail)
			}
		}
	}
	b.blank()
	switch {
	case r.Blocked():
		b.line("BLOCKED: the enforce policy refuses every reachable MX host; mail to %s cannot be delivered", r.Domain)
	case r.Record.Temporary:
		b.line("UNKNOWN: the _mta-sts TXT lookup failed temporarily, so what a policy would decide cannot be shown; delivery defers unless a policy is cached")
	case len(r.Hosts) == 0:
		b.line("Result: no MX host to test")
	case r.Hosts[0].Enforce == nil:
		b.line("Result: no MTA-STS policy with MX patterns; nothing to enforce")
	default:
		b.line("Result: under enforce, %d of %d MX hosts would get mail", deliver, len(r.Hosts))
	}
	return b.writeTo(w)
}

func writeRecord(b *textBuilder, r RecordReport) {
	b.line("TXT %s", r.Name)
	for _, t := range r.TXT {
		b.field("", strconv.Quote(t))
	}
	if len(r.TXT) == 0 && r.Error == "" {
		b.field("", "(none)")
	}
	if r.Selected != "" {
		b.field("record", fmt.Sprintf("selected, id %s", r.ID))
	}
	if r.Error != "" {
		msg := r.Error
		if r.Temporary {
			msg = "temporary DNS failure (not \"no policy\"): " + msg
		} else {
			msg = "no usable record, so no policy: " + msg
		}
		b.field("record", msg)
	}
}

func writePolicy(b *textBuilder, p *PolicyReport) {
	b.line("Policy %s", p.URL)
	if !p.Fetched {
		b.field("fetch", fmt.Sprintf("FAILED %s: %s", p.ResultType, p.Error))
	} else {
		b.field("fetch", "ok")
		b.field("mode", string(p.Mode))
		b.field("max_age", fmt.Sprintf("%d (%s)", p.MaxAge, humanAge(p.MaxAge)))
		if len(p.MX) == 0 {
			b.field("mx", "(none)")
		}
		for i, m := range p.MX {
			b.field(firstOnly(i, "mx"), m)
		}
	}
	if p.Text != "" {
		for i, l := range strings.Split(strings.TrimRight(p.Text, "\r\n"), "\n") {
			b.field(firstOnly(i, "text"), "| "+strings.TrimSuffix(l, "\r"))
		}
	}
}

func writeTLS(b *textBuilder, t *TLSInfo) {
	b.field("TLS", fmt.Sprintf("%s, %s, SNI %s", t.Version, t.Cipher, t.ServerName))
	for i, c := range t.Chain {
		subject := c.Subject
		if subject == "" {
			subject = "(empty)"
		}
		b.field(firstOnly(i, "chain"), fmt.Sprintf("[%d] subject  %s", i, subject))
		if len(c.SANs) > 0 {
			b.field("", "    SANs     "+strings.Join(c.SANs, ", "))
		}
		b.field("", "    issuer   "+c.Issuer)
		b.field("", fmt.Sprintf("    valid    %s to %s (%s)", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), c.Validity))
	}
	cert := t.Verdict
	if t.Verdict != VerdictValid {
		cert = "FAIL " + t.Verdict
		if t.Detail != "" {
			cert += ": " + t.Detail
		}
	}
	b.field("cert", cert)
	if len(t.Extensions) > 0 {
		b.field("after TLS", strings.Join(t.Extensions, ", "))
	}
	if t.EHLOError != "" {
		b.field("after TLS", "EHLO failed: "+t.EHLOError)
	}
}

// humanAge writes a max_age in days and hours, as policies are written.
func humanAge(secs int64) string {
	d := time.Duration(secs) * time.Second
	days, rest := d/(24*time.Hour), d%(24*time.Hour)
	switch {
	case days == 0:
		return rest.String()
	case rest == 0:
		return fmt.Sprintf("%d days", days)
	default:
		return fmt.Sprintf("%d days %s", days, rest)
	}
}

// firstOnly returns key for the first line of a multi-line field and "" for the lines that continue it.
func firstOnly(i int, key string) string {
	if i == 0 {
		return key
	}
	return ""
}

// textBuilder collects the output so that it is written with one call.
type textBuilder struct{ sb strings.Builder }

func (b *textBuilder) line(format string, args ...any) {
	fmt.Fprintf(&b.sb, format, args...)
	b.sb.WriteByte('\n')
}

func (b *textBuilder) blank() { b.sb.WriteByte('\n') }

// field writes "  key        value", aligned; an empty key continues the previous field.
func (b *textBuilder) field(key, value string) {
	fmt.Fprintf(&b.sb, "  %-10s %s\n", key, value)
}

func (b *textBuilder) writeTo(w io.Writer) error {
	if _, err := io.WriteString(w, b.sb.String()); err != nil {
		return fmt.Errorf("diag: writing report: %w", err)
	}
	return nil
}

// hostHeading starts one MX host's block: "[pref] name", marking the implicit MX of a domain without MX
// records (RFC 5321 Section 5.1).
func (b *textBuilder) hostHeading(pref uint16, host string, implicit bool) {
	b.blank()
	if implicit {
		host += " (implicit MX)"
	}
	b.line("[%d] %s", pref, host)
}
