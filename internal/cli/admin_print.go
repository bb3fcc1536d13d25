package cli

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/delivery"
)

// Text output of the admin verbs: aligned tables for people. Scripts use --json, whose format is the API's.

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// row writes one table row; cells are cleaned of anything that would break the alignment or the terminal.
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = clean(c)
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// clean makes s safe to print in a table cell: SMTP reply texts and policy bodies come from remote hosts,
// so control characters (terminal escapes among them), tabs and line breaks become spaces or U+FFFD.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case !unicode.IsPrint(r) && r != ' ':
			return utf8.RuneError
		}
		return r
	}, s)
}

// truncate shortens s to n runes, marking the cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtSeconds writes a duration in seconds the way policies state them: whole days or hours when exact.
func fmtSeconds(s int64) string {
	switch {
	case s > 0 && s%86400 == 0:
		return strconv.FormatInt(s/86400, 10) + "d"
	case s > 0 && s%3600 == 0:
		return strconv.FormatInt(s/3600, 10) + "h"
	default:
		return (time.Duration(s) * time.Second).String()
	}
}

func sender(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("the admin API's answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func printQueueList(w io.Writer, msgs []admin.Message) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "no messages")
		return err
	}
	tw := newTable(w)
	row(tw, "ID", "STATE", "FROM", "RECEIVED", "RCPTS Q/D/F", "ATTEMPTS", "NEXT ATTEMPT", "DOMAINS", "LAST ERROR")
	for _, m := range msgs {
		row(tw, m.ID, m.State, sender(m.From), fmtTime(m.Received), fmt.Sprintf("%d/%d/%d", m.Queued, m.Delivered, m.Failed),
			strconv.Itoa(m.Attempts), fmtTime(m.NextAttempt), orDash(strings.Join(m.Domains, ",")), orDash(truncate(m.LastError, 60)))
	}
	return tw.Flush()
}

func printQueueSummary(w io.Writer, s admin.QueueSummary) error {
	tw := newTable(w)
	row(tw, "messages", strconv.Itoa(s.Messages))
	row(tw, "held", strconv.Itoa(s.Held))
	row(tw, "in flight", strconv.Itoa(s.InFlight))
	oldest := "-"
	if !s.Oldest.IsZero() {
		oldest = fmt.Sprintf("%s (%s ago)", fmtTime(s.Oldest), time.Duration(s.OldestAgeSeconds)*time.Second)
	}
	row(tw, "oldest queued", oldest)
	fmt.Fprintln(tw)
	row(tw, "STATE", "RECIPIENTS")
	for _, st := range slices.Sorted(maps.Keys(s.RecipientsByState)) {
		row(tw, st, strconv.Itoa(s.RecipientsByState[st]))
	}
	fmt.Fprintln(tw)
	// Busiest domains first, as qshape shows them.
	domains := slices.SortedFunc(maps.Keys(s.QueuedByDomain), func(a, b string) int {
		return cmp.Or(cmp.Compare(s.QueuedByDomain[b], s.QueuedByDomain[a]), strings.Compare(a, b))
	})
	row(tw, "DOMAIN", "QUEUED")
	for _, d := range domains {
		row(tw, d, strconv.Itoa(s.QueuedByDomain[d]))
	}
	return tw.Flush()
}

func printMessage(w io.Writer, m admin.MessageDetail) error {
	tw := newTable(w)
	var flags []string
	for _, f := range []struct {
		on   bool
		name string
	}{{m.RequireTLS, "REQUIRETLS"}, {m.TLSOptional, "TLS-Required: No"}, {m.SMTPUTF8, "SMTPUTF8"},
		{m.EightBit, "8BITMIME"}, {m.DSN, "DSN"}, {m.Report, "TLS report"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	for _, kv := range [][2]string{
		{"id", m.ID},
		{"state", m.State},
		{"from", sender(m.From)},
		{"size", fmt.Sprintf("%d bytes", m.Size)},
		{"received", fmtTime(m.Received)},
		{"expires", fmtTime(m.Expires)},
		{"attempts", strconv.Itoa(m.Attempts)},
		{"next attempt", fmtTime(m.NextAttempt)},
		{"client ip", orDash(m.ClientIP)},
		{"envid", orDash(m.EnvID)},
		{"ret", orDash(m.Ret)},
		{"flags", orDash(strings.Join(flags, ", "))},
		{"last error", orDash(m.LastError)},
	} {
		row(tw, kv[0], kv[1])
	}
	if m.QuarantineReason != "" {
		row(tw, "quarantined", m.QuarantineReason)
	}
	fmt.Fprintln(tw)
	row(tw, "RECIPIENT", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST RESULT")
	for _, r := range m.Recipients {
		row(tw, r.Addr, r.State, strconv.Itoa(r.Attempts), fmtTime(r.NextAttempt),
			orDash(truncate(result(r.LastCode, r.LastEnhanced, string(r.LastResultType), r.LastText), 80)))
	}
	if len(m.Timeline) > 0 {
		fmt.Fprintln(tw)
		row(tw, "TIME", "RECIPIENT", "OUTCOME", "MX", "TLS", "POLICY", "RESULT")
		for _, a := range m.Timeline {
			row(tw, fmtTime(a.At), a.Rcpt, a.Outcome, orDash(a.RemoteMTA), orDash(a.TLS), orDash(a.Policy),
				orDash(truncate(result(a.Code, a.Enhanced, string(a.ResultType), a.Text), 80)))
		}
	}
	return tw.Flush()
}

// result describes one delivery result: SMTP code and enhanced status, the RFC 8460 result type, the text.
func result(code int, enhanced, resultType, text string) string {
	var parts []string
	if code != 0 {
		parts = append(parts, strconv.Itoa(code))
	}
	if enhanced != "" {
		parts = append(parts, enhanced)
	}
	if resultType != "" && !strings.HasPrefix(text, resultType) {
		parts = append(parts, resultType+":")
	}
	if text != "" {
		parts = append(parts, text)
	}
	return strings.Join(parts, " ")
}

func stsState(e admin.STSEntry) string {
	if e.Expired {
		return "expired"
	}
	return "valid"
}

func printSTSList(w io.Writer, entries []admin.STSEntry) error {
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "no cached policies")
		return err
	}
	tw := newTable(w)
	row(tw, "DOMAIN", "MODE", "STATE", "ID", "MAX AGE", "FETCHED", "EXPIRES", "FAILURES", "LAST ERROR")
	for _, e := range entries {
		row(tw, e.Domain, e.Mode, stsState(e), e.ID, fmtSeconds(e.MaxAgeSeconds), fmtTime(e.Fetched), fmtTime(e.Expires),
			strconv.Itoa(e.ConsecutiveFailures), orDash(truncate(e.LastError, 60)))
	}
	return tw.Flush()
}

func printSTSEntry(w io.Writer, e admin.STSEntry) error {
	tw := newTable(w)
	domain := e.Domain
	if e.DomainUnicode != "" {
		domain += " (" + e.DomainUnicode + ")"
	}
	for _, kv := range [][2]string{
		{"domain", domain},
		{"mode", e.Mode},
		{"state", stsState(e)},
		{"id", e.ID},
		{"max age", fmtSeconds(e.MaxAgeSeconds)},
		{"mx", orDash(strings.Join(e.MX, ", "))},
		{"fetched", fmtTime(e.Fetched)},
		{"expires", fmtTime(e.Expires)},
		{"last used", fmtTime(e.LastUsed)},
		{"failures", strconv.Itoa(e.ConsecutiveFailures)},
		{"last error", orDash(e.LastError)},
		{"last error at", fmtTime(e.LastErrorAt)},
	} {
		row(tw, kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\npolicy:")
	for _, line := range strings.Split(strings.TrimRight(e.Policy, "\r\n"), "\n") {
		fmt.Fprintln(w, "  "+clean(line))
	}
	return nil
}

func walkJSON(dec *json.Decoder, key string, emit func(k, v string)) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := 0
		for ; dec.More(); n++ {
			sub := fmt.Sprintf("%s[%d]", key, n)
			if t == '{' {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, ok := kt.(string)
				if !ok {
					return errors.New("object key is not a string")
				}
				sub = k
				if key != "" {
					sub = key + "." + k
				}
			}
			if err := walkJSON(dec, sub, emit); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return err
		}
		if n == 0 {
			if t == '{' {
				emit(key, "{}")
			} else {
				emit(key, "[]")
			}
		}
	case string:
		emit(key, t)
	case json.Number:
		emit(key, t.String())
	case bool:
		emit(key, strconv.FormatBool(t))
	case nil:
		emit(key, "-")
	}
	return nil
}

// printExplanation prints `mxgate policy explain`.
func printExplanation(w io.Writer, e delivery.Explanation) error {
	tw := newTable(w)
	row(tw, "domain", e.Domain)
	if e.RequireTLS {
		row(tw, "requiretls", "yes (the plan is for a message received with REQUIRETLS)")
	}
	if e.Undeliverable != "" {
		row(tw, "undeliverable", e.Undeliverable)
	} else {
		row(tw, "plan", fmt.Sprintf("%s (source %s, level %s)", e.Plan, e.Source, e.Level))
		row(tw, "why", e.Reason)
	}
	if e.Override {
		row(tw, "override", "yes: the domain's rule replaces its published policy")
	}
	if len(e.Route) > 0 {
		row(tw, "route", strings.Join(e.Route, ", "))
	}
	if e.STSMode != "" {
		row(tw, "mta-sts", fmt.Sprintf("mode %s, id %s", e.STSMode, e.STSID))
	}
	if e.STS != nil {
		row(tw, "cached", fmt.Sprintf("id %s, mode %s, expires %s", e.STS.ID, e.STS.Mode, e.STS.Expires.UTC().Format(time.RFC3339)))
	}
	if e.DiscoveryFailure != "" {
		row(tw, "discovery failure", e.DiscoveryFailure)
	}
	rule := e.Settings.Rule
	if rule == "" {
		rule = "-"
	}
	if e.DANE != "" {
		row(tw, "dane", string(e.DANE))
	}
	row(tw, "settings", fmt.Sprintf("Sender.EnableMTASTS %v; Sender.EnableDANE %v; rule %s", e.Settings.EnableMTASTS, e.Settings.EnableDANE, rule))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(e.MX) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	row(tw, "HOST", "PREF", "ALLOWED", "DANE", "FAILURE")
	for _, m := range e.MX {
		allowed, failure, dane := "yes", "-", "-"
		if !m.Allowed {
			allowed = "no"
		}
		if m.Failure != "" {
			failure = m.Failure + ": " + m.Detail
		}
		if m.DANE != nil {
			dane = string(m.DANE.Status)
			if m.DANE.Usable {
				dane += " (usable)"
			}
		}
		row(tw, m.Host, strconv.Itoa(int(m.Pref)), allowed, dane, failure)
	}
	return tw.Flush()
}
