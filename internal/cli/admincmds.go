package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/admin"
)

// addAdminCommands adds the verbs that talk to a running gateway through the admin API.
func addAdminCommands(root *cobra.Command, g *globals) {
	root.AddCommand(queueCmd(g), policyCmd(g), statusCmd(g), settingsCmd(g), configCmd(g), nodesCmd(g))
	addSTSCacheCmd(root, g)
	addTLSRPTCmd(root, g)
}

// adminRequestTimeout bounds one API call; a policy refresh waits for DNS and an HTTPS fetch.
const adminRequestTimeout = 2 * time.Minute

// adminClient returns a client for the gateway's admin API: the URL from --admin or the configuration's
// admin.listen, the token from --token or the data directory's token file. The configuration is loaded only
// when one of them is missing.
func adminClient(g *globals) (*admin.Client, error) {
	base, token := g.adminURL, g.token
	hc := &http.Client{Timeout: adminRequestTimeout}
	if base == "" || token == "" {
		cfg, _, err := g.loadConfig()
		if err != nil {
			return nil, err
		}
		if base == "" {
			base, err = listenURL(cfg.Admin.Listen)
			if err != nil {
				return nil, err
			}
			if cfg.Admin.TLS() {
				base = "https://" + strings.TrimPrefix(base, "http://")
				if hc.Transport, err = pinnedTransport(cfg.Admin.TLSCertFile); err != nil {
					return nil, err
				}
			}
		}
		if token == "" {
			token, err = admin.ReadToken(admin.TokenPath(cfg.Data.Dir))
			if err != nil {
				return nil, fmt.Errorf("%w (pass --token, or run as the user that runs mxgate serve)", err)
			}
		}
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &admin.Client{BaseURL: base, Token: token, HTTP: hc}, nil
}

// pinnedTransport trusts exactly the certificate in certFile: the CLI reads the gateway's own file, so it
// needs neither a CA nor a name that matches the loopback address it connects to.
func pinnedTransport(certFile string) (*http.Transport, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("admin.tls_cert_file: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("admin.tls_cert_file: %s holds no PEM certificate", certFile)
	}
	want := block.Bytes
	return &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is the pin below, not the web PKI.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return fmt.Errorf("the admin listener's certificate is not the one in %s", certFile)
			}
			return nil
		},
	}}, nil
}

// listenURL turns the admin listen address into a URL to connect to: a wildcard or empty host means the
// gateway listens on every interface, so the loopback address of the same family is used.
func listenURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("admin.listen %q: %w", listen, err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if err == nil && ip.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// call makes one API request and returns the raw JSON answer.
func call(ctx context.Context, g *globals, method, path string) (json.RawMessage, error) {
	c, err := adminClient(g)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.Do(ctx, method, path, nil, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// show runs a read command: the answer as JSON with --json, else decoded into a T and printed by print.
func show[T any](g *globals, path string, print func(io.Writer, T) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		raw, err := call(cmd.Context(), g, http.MethodGet, path)
		if err != nil {
			return err
		}
		return output(g, raw, print)
	}
}

// output prints raw as JSON with --json, else decoded into a T by print.
func output[T any](g *globals, raw json.RawMessage, print func(io.Writer, T) error) error {
	if g.json {
		return printJSON(g.stdout, raw)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decoding the admin API's answer: %w", err)
	}
	return print(g.stdout, v)
}

// act runs a state-changing command and says what it did (the answer as JSON with --json).
func act(cmd *cobra.Command, g *globals, method, path, done string) error {
	raw, err := call(cmd.Context(), g, method, path)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, raw)
	}
	_, err = fmt.Fprintln(g.stdout, done)
	return err
}

func queueCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "List and act on queued messages",
	}
	var f admin.QueueFilter
	var allNodes bool
	var node string
	list := &cobra.Command{
		Use:   "list",
		Short: "List queued messages, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if allNodes {
				p := strings.Replace(admin.QueuePath(f), "/api/v1/queue", "/api/v1/cluster/queue", 1)
				return show(g, p, printClusterQueue)(cmd, args)
			}
			return show(g, admin.QueuePath(f), printQueueList)(cmd, args)
		},
	}
	list.Flags().BoolVar(&allNodes, "all-nodes", false, "list the queue of every node of the cluster, with each message's node")
	list.Flags().StringVar(&f.Domain, "domain", "", "only messages with a recipient in this domain")
	list.Flags().StringVar(&f.Sender, "sender", "", "only messages from this exact sender address")
	list.Flags().StringVar(&f.State, "state", "", "only messages with a recipient in this state: queued, failed, delivered or quarantined")
	list.Flags().BoolVar(&f.HeldOnly, "held", false, "only held messages")
	list.Flags().IntVar(&f.Limit, "limit", 0, "list at most N messages (default: the server's, 1000)")

	summary := &cobra.Command{
		Use:   "summary",
		Short: "Count the queue by recipient state and domain",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/queue/summary", printQueueSummary),
	}
	showCmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a message: envelope, recipients and delivery attempts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, admin.NodeMessagePath(node, args[0], ""), printMessage)(cmd, args)
		},
	}
	showCmd.Flags().StringVar(&node, "node", "", "the node holding the message (as queue list --all-nodes shows it); default: this node")
	cmd.AddCommand(list, summary, showCmd)

	actions := []struct {
		use, short, method, action, done string
	}{
		{"retry", "Make the queued recipients of a message due now", http.MethodPost, "retry",
			"retry scheduled: the queued recipients of message %s are due now"},
		{"hold", "Stop deliveries of a message until it is released", http.MethodPost, "hold",
			"held message %s"},
		{"release", "Release a held message", http.MethodPost, "release",
			"released message %s"},
		{"delete", "Remove a message without sending a DSN", http.MethodDelete, "",
			"deleted message %s (no DSN sent)"},
		{"bounce", "Fail the remaining recipients of a message and send the DSNs they asked for",
			http.MethodPost, "bounce", "bounced message %s: its remaining recipients failed (5.0.0) and DSNs were queued as requested"},
	}
	for _, a := range actions {
		var b bulkFlags
		var node string
		sub := &cobra.Command{
			Use:   a.use + " ID | --all | [--domain D] [--result-type T] [--held] [--older-than AGE] [--all-nodes]",
			Short: a.short + ", or of every message selected",
			Args:  cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				switch {
				case len(args) == 1 && b.selects():
					return fmt.Errorf("give a message ID or a selection (--all or filters), not both")
				case len(args) == 1:
					if b.dryRun || b.yes || b.allNodes {
						return fmt.Errorf("--dry-run, --yes and --all-nodes apply to bulk actions; %s of one message ID is done at once (by the node holding it: --node)", a.use)
					}
					done := fmt.Sprintf(a.done, args[0])
					if node != "" {
						done += " on node " + node
					}
					return act(cmd, g, a.method, admin.NodeMessagePath(node, args[0], a.action), done)
				case node != "":
					return fmt.Errorf("--node applies to one message ID; bulk actions act on the node asked, or on every node with --all-nodes")
				case !b.selects():
					return fmt.Errorf("give a message ID, --all, or a filter (--domain, --result-type, --held, --older-than)")
				}
				return runBulk(cmd, g, a.use, &b)
			},
		}
		b.add(sub, a.use)
		sub.Flags().StringVar(&node, "node", "", "the node holding the message (as queue list --all-nodes shows it): the action is sent to that node; default: this node")
		cmd.AddCommand(sub)
	}
	return cmd
}

// parentCmd returns root's subcommand name, adding it (with short) if it does not exist yet, so that verbs
// defined in different files can share a parent such as "sts".
func parentCmd(root *cobra.Command, name, short string) *cobra.Command {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return c
		}
	}
	c := &cobra.Command{Use: name, Short: short}
	root.AddCommand(c)
	return c
}

func addSTSCacheCmd(root *cobra.Command, g *globals) {
	cmd := parentCmd(root, "sts", "MTA-STS (RFC 8461) policies")
	cache := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and manage the MTA-STS policy cache",
	}
	cache.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the cached policies, expired ones included",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/sts/cache", printSTSList),
	}, &cobra.Command{
		Use:   "show DOMAIN",
		Short: "Show a domain's cached policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, admin.STSPath(args[0], ""), printSTSEntry)(cmd, args)
		},
	}, &cobra.Command{
		Use:   "refresh DOMAIN",
		Short: "Fetch a domain's policy now, ignoring the cache and any back-off",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := call(cmd.Context(), g, http.MethodPost, admin.STSPath(args[0], "refresh"))
			if err != nil {
				return err
			}
			return output(g, raw, func(w io.Writer, e admin.STSEntry) error {
				fmt.Fprintf(w, "refreshed the MTA-STS policy of %s\n\n", e.Domain)
				return printSTSEntry(w, e)
			})
		},
	}, &cobra.Command{
		Use:   "flush DOMAIN",
		Short: "Remove a domain's cached policy; the next delivery discovers it afresh",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return act(cmd, g, http.MethodDelete, admin.STSPath(args[0], ""),
				fmt.Sprintf("flushed the cached MTA-STS policy of %s; the next delivery looks it up afresh", args[0]))
		},
	})
	cmd.AddCommand(cache)
}

func policyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The TLS policy applied to destinations",
	}
	var requireTLS bool
	explain := &cobra.Command{
		Use:   "explain DOMAIN|[ADDRESS]",
		Short: "Show the TLS plan delivery would follow for a domain or address literal now, and why",
		Long: "Shows the plan delivery itself would build now (static route, address literal, MTA-STS, the\n" +
			"per-domain rule and its override, REQUIRETLS with --requiretls) and which hosts it allows.\n" +
			"It may fetch an MTA-STS policy but connects to no host.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := admin.PolicyPath(args[0])
			if requireTLS {
				path = admin.PolicyPathRequireTLS(args[0])
			}
			return show(g, path, printExplanation)(cmd, args)
		},
	}
	explain.Flags().BoolVar(&requireTLS, "requiretls", false, "explain for a message received with REQUIRETLS (RFC 8689)")
	cmd.AddCommand(explain)
	return cmd
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running gateway's status",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/status", printStatus),
	}
}
