package cli

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/queue"
)

func traceCmd(g *globals) *cobra.Command {
	var tq queue.TraceQuery
	cmd := &cobra.Command{
		Use:   "trace [ID|MESSAGE-ID|ADDRESS]",
		Short: "Find delivered and bounced messages, with every attempt",
		Long: "Finds messages that left the queue (delivered, bounced) within queue.track_retention (7 days by\n" +
			"default) by queue ID, Message-ID, sender or recipient, and prints each recipient's final result and\n" +
			"every delivery attempt. The argument matches any of them; --id, --message-id, --from and --to match\n" +
			"one each, and combine. Messages still queued: mxgate queue show ID.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				tq.Any = args[0]
			}
			if tq == (queue.TraceQuery{Limit: tq.Limit}) {
				return fmt.Errorf("what to find: mxgate trace ID|MESSAGE-ID|ADDRESS, or --id, --message-id, --from, --to")
			}
			raw, err := call(cmd.Context(), g, http.MethodGet, admin.TracePath(tq))
			if err != nil {
				return err
			}
			return output(g, raw, printTrace)
		},
	}
	cmd.Flags().StringVar(&tq.ID, "id", "", "queue ID (as in `250 ... queued as ID`)")
	cmd.Flags().StringVar(&tq.MessageID, "message-id", "", "Message-ID header field, with or without <>")
	cmd.Flags().StringVar(&tq.Sender, "from", "", "envelope sender")
	cmd.Flags().StringVar(&tq.Recipient, "to", "", "recipient")
	cmd.Flags().IntVar(&tq.Limit, "limit", 20, "at most this many messages, newest first")
	return cmd
}

func printTrace(w io.Writer, msgs []admin.Traced) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "no finished message matches (messages still queued: mxgate queue list)")
		return err
	}
	for i, m := range msgs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		kind := ""
		switch {
		case m.DSN:
			kind = " (delivery status notification)"
		case m.Report:
			kind = " (TLS report)"
		}
		tw := newTable(w)
		row(tw, "message", m.ID+kind)
		if m.Node != "" {
			row(tw, "node", m.Node)
		}
		row(tw, "message-id", orDash(m.MessageID))
		row(tw, "from", orDash(m.From))
		row(tw, "size", strconv.FormatInt(m.Size, 10)+" bytes")
		row(tw, "received", fmtTime(m.Received))
		row(tw, "finished", fmt.Sprintf("%s (after %s)", fmtTime(m.Finished), humanDuration(m.Finished.Sub(m.Received))))
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		tw = newTable(w)
		row(tw, "RECIPIENT", "STATE", "ATTEMPTS", "RESULT")
		for _, r := range m.Recipients {
			res := result(r.LastCode, r.LastEnhanced, string(r.LastResultType), clean(r.LastText))
			if r.LastRemoteMTA != "" {
				res += " (" + r.LastRemoteMTA + ")"
			}
			row(tw, r.Addr, r.State, strconv.Itoa(r.Attempts), orDash(res))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		tw = newTable(w)
		row(tw, "ATTEMPT", "RECIPIENT", "OUTCOME", "MX", "TLS", "POLICY", "RESULT")
		for _, a := range m.Timeline {
			row(tw, fmtTime(a.At), a.Rcpt, a.Outcome, orDash(a.RemoteMTA), orDash(a.TLS), orDash(a.Policy),
				orDash(result(a.Code, a.Enhanced, string(a.ResultType), clean(a.Text))))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
