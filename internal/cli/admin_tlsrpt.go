package cli

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/admin"
)

// addTLSRPTCmd adds `mxgate tlsrpt lookup|pending|preview|send|sent|suppress`, the operator's view of the
// daily TLS reports (RFC 8460) of the running gateway.
func addTLSRPTCmd(root *cobra.Command, g *globals) {
	cmd := parentCmd(root, "tlsrpt", "SMTP TLS reports (RFC 8460): lookup, pending, preview, send, sent, suppress")
	cmd.AddCommand(&cobra.Command{
		Use:   "lookup DOMAIN",
		Short: "Show a domain's live _smtp._tls record and where its reports would go",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, admin.TLSRPTLookupPath(args[0]), printTLSRPTLookup)(cmd, args)
		},
	}, &cobra.Command{
		Use:   "pending",
		Short: "List the recorded aggregates whose reports have not been sent",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/tlsrpt/pending", printPendingReports),
	})

	var previewDay string
	preview := &cobra.Command{
		Use:   "preview DOMAIN [--day YYYY-MM-DD]",
		Short: "Show the report of a domain as it would be sent now (RFC 8460 JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if previewDay != "" {
				if _, err := time.Parse(admin.DayFormat, previewDay); err != nil {
					return fmt.Errorf("invalid --day %q: want YYYY-MM-DD", previewDay)
				}
			}
			raw, err := call(cmd.Context(), g, http.MethodGet, admin.TLSRPTPreviewPath(args[0], previewDay))
			if err != nil {
				return err
			}
			// The report is JSON for people and scripts alike.
			return printJSON(g.stdout, raw)
		},
	}
	preview.Flags().StringVar(&previewDay, "day", "", "UTC day of the report (default: today)")

	var sendDay string
	var today bool
	send := &cobra.Command{
		Use:   "send [--day YYYY-MM-DD | --today]",
		Short: "Send a day's reports now (default: yesterday, UTC)",
		Long: "Sends the reports of a UTC day that is over (default: yesterday) to each domain's rua destinations; " +
			"a report already handled is not sent again. --today sends the current day so far: sessions recorded " +
			"later today are then never reported.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := admin.SendRequest{Day: sendDay, Today: today}
			switch {
			case today && sendDay != "":
				return fmt.Errorf("give --day or --today, not both")
			case sendDay != "":
				if _, err := time.Parse(admin.DayFormat, sendDay); err != nil {
					return fmt.Errorf("invalid --day %q: want YYYY-MM-DD", sendDay)
				}
			case !today:
				req.Day = time.Now().UTC().AddDate(0, 0, -1).Format(admin.DayFormat)
			}
			raw, err := callBody(cmd.Context(), g, http.MethodPost, "/api/v1/tlsrpt/send", req)
			if err != nil {
				return err
			}
			return output(g, raw, printSendResult)
		},
	}
	send.Flags().StringVar(&sendDay, "day", "", "UTC day to send, YYYY-MM-DD (it must be over)")
	send.Flags().BoolVar(&today, "today", false, "send the current UTC day so far")

	cmd.AddCommand(preview, send, &cobra.Command{
		Use:   "sent",
		Short: "Show the report log: each report to each destination",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/tlsrpt/sent", printSentReports),
	}, suppressCmd(g))
}

func suppressCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "suppress",
		Short: "Manage the report suppression list: addresses, domains or https URLs that get no reports",
	}
	var note string
	add := &cobra.Command{
		Use:   "add ENTRY [--note NOTE]",
		Short: "Send no more reports to an address, a domain (all its addresses and https hosts) or an https URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := callBody(cmd.Context(), g, http.MethodPost, "/api/v1/tlsrpt/suppressions",
				admin.SuppressRequest{Entry: args[0], Note: note})
			if err != nil {
				return err
			}
			return output(g, raw, func(w io.Writer, a admin.ActionResult) error {
				_, err := fmt.Fprintf(w, "suppressed %s: it receives no TLS reports\n", a.Entry)
				return err
			})
		},
	}
	add.Flags().StringVar(&note, "note", "", "why (shown in the list)")
	cmd.AddCommand(add, &cobra.Command{
		Use:     "rm ENTRY",
		Aliases: []string{"remove"},
		Short:   "Remove an entry from the suppression list",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := call(cmd.Context(), g, http.MethodDelete, admin.SuppressionPath(args[0]))
			if err != nil {
				return err
			}
			return output(g, raw, func(w io.Writer, a admin.ActionResult) error {
				_, err := fmt.Fprintf(w, "removed %s from the suppression list\n", a.Entry)
				return err
			})
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List the suppression list",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/tlsrpt/suppressions", printSuppressions),
	})
	return cmd
}

// Text output of the tlsrpt verbs.

func printTLSRPTLookup(w io.Writer, l admin.TLSRPTLookup) error {
	tw := newTable(w)
	row(tw, "name", l.Name)
	valid := "yes"
	if !l.Valid {
		valid = "no: " + l.Error
	}
	row(tw, "valid", valid)
	for i, u := range l.RUA {
		row(tw, fmt.Sprintf("rua[%d]", i), u)
	}
	for i, u := range l.Ignored {
		row(tw, fmt.Sprintf("ignored[%d]", i), u)
	}
	if len(l.TXT) == 0 {
		row(tw, "txt", "-")
	}
	for i, t := range l.TXT {
		row(tw, fmt.Sprintf("txt[%d]", i), strconv.Quote(t))
	}
	return tw.Flush()
}

func printPendingReports(w io.Writer, list []admin.PendingReport) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no pending reports")
		return err
	}
	tw := newTable(w)
	row(tw, "DAY", "DOMAIN", "POLICIES", "SUCCESSFUL", "FAILED", "REPORT ID")
	for _, p := range list {
		row(tw, p.Day, p.Domain, strconv.Itoa(p.Policies), strconv.FormatInt(p.Successful, 10),
			strconv.FormatInt(p.Failed, 10), orDash(p.ReportID))
	}
	return tw.Flush()
}

func printSendResult(w io.Writer, r admin.SendResult) error {
	if len(r.Domains) == 0 {
		_, err := fmt.Fprintf(w, "no reports to send for %s\n", r.Day)
		return err
	}
	fmt.Fprintf(w, "reports of %s:\n", r.Day)
	tw := newTable(w)
	row(tw, "DOMAIN", "STATUS", "REPORT ID", "DESTINATION", "DELIVERY", "DETAIL")
	for _, d := range r.Domains {
		if len(d.Deliveries) == 0 {
			row(tw, d.Domain, d.Status, orDash(d.ReportID), "-", "-", orDash(truncate(d.Detail, 60)))
			continue
		}
		for _, s := range d.Deliveries {
			row(tw, d.Domain, d.Status, orDash(d.ReportID), s.Destination, s.Status, orDash(truncate(s.LastError, 60)))
		}
	}
	return tw.Flush()
}

func printSentReports(w io.Writer, list []admin.SentReport) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no reports sent")
		return err
	}
	tw := newTable(w)
	row(tw, "DAY", "DOMAIN", "DESTINATION", "STATUS", "ATTEMPTS", "LAST ATTEMPT", "NEXT ATTEMPT", "MSG ID", "LAST ERROR")
	for _, s := range list {
		row(tw, s.Day, s.Domain, s.Destination, s.Status, strconv.Itoa(s.Attempts), fmtTime(s.LastAttempt),
			fmtTime(s.NextAttempt), orDash(s.MsgID), orDash(truncate(s.LastError, 60)))
	}
	return tw.Flush()
}

func printSuppressions(w io.Writer, list []admin.Suppression) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "the suppression list is empty")
		return err
	}
	tw := newTable(w)
	row(tw, "ENTRY", "ADDED", "NOTE")
	for _, s := range list {
		row(tw, s.Entry, fmtTime(s.Added), orDash(s.Note))
	}
	return tw.Flush()
}
