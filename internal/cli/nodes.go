package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/admin"
)

func nodesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes of the cluster: version, settings generation, queue, heartbeat, TLS mix",
		Long: "Lists every node in the node registry, as the node asked sees it: its admin URL, version, the\n" +
			"settings generation it runs and the newest it has seen committed, its queued messages, its last\n" +
			"heartbeat and the TLS of its deliveries in the last 24 hours. A node that runs an older generation\n" +
			"than committed for more than two heartbeats is flagged lagging; one whose heartbeat is too old, silent;\n" +
			"one under whose name two processes run, name-clash. A single node lists itself.",
		Args: cobra.NoArgs,
		RunE: show(g, "/api/v1/nodes", printNodes),
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "forget NAME",
		Short: "Remove a retired node from the registry (a node that still runs adds itself again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return act(cmd, g, http.MethodDelete, "/api/v1/nodes/"+url.PathEscape(args[0]),
				fmt.Sprintf("forgot node %s: it is no longer listed", args[0]))
		},
	})
	return cmd
}

func printNodes(w io.Writer, l admin.NodeList) error {
	tw := newTable(w)
	row(tw, "NODE", "ADMIN URL", "VERSION", "GEN RUN/COMMITTED", "QUEUED", "LAST HEARTBEAT", "TLS VERIFIED/ENCRYPTED/PLAIN (24H)", "STATE")
	flagged := 0
	for _, n := range l.Nodes {
		name := n.Name
		if n.Self {
			name += " (this node)"
		}
		state := "ok"
		if len(n.Flags) > 0 {
			flagged++
			fl := make([]string, len(n.Flags))
			for i, f := range n.Flags {
				fl[i] = strings.ToUpper(string(f))
			}
			state = strings.Join(fl, ",") + ": " + n.Problem
		}
		row(tw, name, n.AdminURL, n.Version, fmt.Sprintf("%d/%d", n.Running, n.Committed), strconv.Itoa(n.Queued),
			fmtTime(n.Heartbeat), fmt.Sprintf("%d/%d/%d", n.TLS.Verified, n.TLS.Encrypted, n.TLS.Plaintext), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if flagged > 0 {
		_, err := fmt.Fprintf(w, "\n%d of %d nodes need attention (committed generation %d; silent after %s without a heartbeat)\n", flagged, len(l.Nodes), l.Committed, l.SilentAfter)
		return err
	}
	return nil
}

func printClusterQueue(w io.Writer, l admin.ClusterQueueList) error {
	for _, u := range l.Unreachable {
		if _, err := fmt.Fprintf(w, "warning: the queue of node %s is not listed: %s\n", u.Node, u.Error); err != nil {
			return err
		}
	}
	if len(l.Messages) == 0 {
		_, err := fmt.Fprintln(w, "no messages")
		return err
	}
	tw := newTable(w)
	row(tw, "NODE", "ID", "STATE", "FROM", "RECEIVED", "RCPTS Q/D/F", "ATTEMPTS", "NEXT ATTEMPT", "DOMAINS", "LAST ERROR")
	for _, m := range l.Messages {
		row(tw, m.Node, m.ID, m.State, sender(m.From), fmtTime(m.Received), fmt.Sprintf("%d/%d/%d", m.Queued, m.Delivered, m.Failed),
			strconv.Itoa(m.Attempts), fmtTime(m.NextAttempt), orDash(strings.Join(m.Domains, ",")), orDash(truncate(m.LastError, 60)))
	}
	return tw.Flush()
}
