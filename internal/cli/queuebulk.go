package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/admin"
)

// bulkFlags are the selection flags of the queue actions, which act on one message ID or on every message
// they select.
type bulkFlags struct {
	all        bool
	domain     string
	resultType string
	held       bool
	olderThan  string
	yes        bool
	dryRun     bool
	allNodes   bool
}

func (b *bulkFlags) add(cmd *cobra.Command, action string) {
	f := cmd.Flags()
	f.BoolVar(&b.all, "all", false, action+" every message in the queue (instead of an ID)")
	f.StringVar(&b.domain, "domain", "", "select messages with a queued recipient in this domain")
	f.StringVar(&b.resultType, "result-type", "", "select messages whose last attempt failed with this RFC 8460 result type (certificate-expired, ...)")
	f.BoolVar(&b.held, "held", false, "select held messages")
	f.StringVar(&b.olderThan, "older-than", "", "select messages received longer ago than this (36h, 2d)")
	f.BoolVar(&b.dryRun, "dry-run", false, "show what would be done and change nothing")
	f.BoolVar(&b.yes, "yes", false, "do not ask for confirmation of a destructive bulk action")
	f.BoolVar(&b.allNodes, "all-nodes", false, "act on the queue of every node of the cluster (with a selection)")
}

func (b *bulkFlags) selects() bool {
	return b.all || b.domain != "" || b.resultType != "" || b.held || b.olderThan != ""
}

func (b *bulkFlags) request(action string) (admin.BulkRequest, error) {
	req := admin.BulkRequest{Action: action, All: b.all, Domain: b.domain, ResultType: b.resultType, Held: b.held,
		OlderThan: b.olderThan, AllNodes: b.allNodes}
	if b.all && (b.domain != "" || b.resultType != "" || b.held || b.olderThan != "") {
		return req, errors.New("--all selects every message and cannot be combined with --domain, --result-type, --held or --older-than")
	}
	if b.olderThan != "" {
		if _, err := admin.ParseAge(b.olderThan); err != nil {
			return req, fmt.Errorf("--older-than: %w", err)
		}
	}
	return req, nil
}

// bulkWords are how a bulk action is told: the prompt's verb, and what was done.
var bulkWords = map[string]struct{ verb, done string }{
	"retry":   {"retry", "made due now"},
	"hold":    {"hold", "held"},
	"release": {"release", "released"},
	"delete":  {"delete", "deleted (no DSN sent)"},
	"bounce":  {"bounce", "bounced (recipients failed with 5.0.0, DSNs queued as requested)"},
}

// runBulk asks the gateway what the action would do, has destructive actions confirmed (--yes, or "y" on
// standard input), then runs it with the confirmed count so that the gateway refuses when more messages
// match by then.
func runBulk(cmd *cobra.Command, g *globals, action string, b *bulkFlags) error {
	req, err := b.request(action)
	if err != nil {
		return err
	}
	c, err := adminClient(g)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	preview := req
	preview.DryRun = true
	p, err := c.QueueBulk(ctx, preview)
	if err != nil {
		return err
	}
	w := bulkWords[action]
	if b.dryRun || p.Affected == 0 {
		if g.json {
			if err := writeJSONValue(g.stdout, p); err != nil {
				return err
			}
			return failedNodes(p, "could not say what they would do")
		}
		fmt.Fprintf(g.stdout, "would %s %s (%d matching)%s; nothing changed\n", w.verb, counted(p.Affected, p.Recipients), p.Matched, onNodes(p))
		return failedNodes(p, "could not say what they would do")
	}
	if p.Destructive {
		if !b.yes {
			ok, err := confirm(g, fmt.Sprintf("%s %s? [y/N] ", strings.ToUpper(w.verb[:1])+w.verb[1:], counted(p.Affected, p.Recipients)))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("not confirmed: nothing was %s", strings.Fields(w.done)[0])
			}
		}
		req.Confirm = p.Affected
	}
	res, err := c.QueueBulk(ctx, req)
	if err != nil {
		return err
	}
	if g.json {
		if err := writeJSONValue(g.stdout, res); err != nil {
			return err
		}
		return failedNodes(res, "did not do it")
	}
	fmt.Fprintf(g.stdout, "%s %s%s\n", counted(res.Affected, res.Recipients), w.done, onNodes(res))
	if res.Gone > 0 {
		fmt.Fprintf(g.stdout, "%d selected messages had already left the queue\n", res.Gone)
	}
	if res.InFlight > 0 {
		fmt.Fprintf(g.stdout, "%d selected messages had a delivery in flight and were left alone; run again once it is recorded\n", res.InFlight)
	}
	return failedNodes(res, "did not do it")
}

// onNodes says, for a bulk action on every node, how many messages of each node it counts.
func onNodes(r admin.BulkResult) string {
	if len(r.Nodes) == 0 {
		return ""
	}
	parts := make([]string, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		parts = append(parts, fmt.Sprintf("%s: %d", n.Node, n.Affected))
	}
	return " on " + strings.Join(parts, ", ")
}

// failedNodes is the error naming the nodes of a bulk action on every node that did not answer for their
// queue, nil if none.
func failedNodes(r admin.BulkResult, what string) error {
	if len(r.Failed) == 0 {
		return nil
	}
	parts := make([]string, 0, len(r.Failed))
	for _, f := range r.Failed {
		parts = append(parts, f.Node+" ("+f.Error+")")
	}
	return fmt.Errorf("%d node(s) %s: %s", len(r.Failed), what, strings.Join(parts, "; "))
}

func counted(msgs, rcpts int) string {
	m, r := "messages", "recipients"
	if msgs == 1 {
		m = "message"
	}
	if rcpts == 1 {
		r = "recipient"
	}
	return fmt.Sprintf("%d %s (%d %s)", msgs, m, rcpts, r)
}

// confirm asks question on standard error and reads the answer from standard input: "y" or "yes" confirm;
// anything else, or no input at all (a script without --yes), does not.
func confirm(g *globals, question string) (bool, error) {
	fmt.Fprint(g.stderr, question)
	line, err := bufio.NewReader(g.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading the confirmation: %w", err)
	}
	if err != nil && line == "" {
		fmt.Fprintln(g.stderr)
		return false, errors.New("no confirmation on standard input: pass --yes to run a destructive bulk action unattended")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// writeJSONValue prints v as indented JSON.
func writeJSONValue(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return printJSON(w, raw)
}
