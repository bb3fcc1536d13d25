package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/console"
	"github.com/mxgate/mxgate/internal/store"
)

// addConsoleCommands adds "console user ...": the web console's accounts, kept in the data directory's
// password file (in cluster mode, in the shared database). The daemon reads them at every console request,
// so a change takes effect at once (a removed account's sessions end, as do an account's sessions when its
// password changes). With --admin or --token the commands go through a running daemon's admin API
// (/api/v1/accounts) instead.
func addConsoleCommands(root *cobra.Command, g *globals) {
	cons := &cobra.Command{Use: "console", Short: "Web console accounts"}
	user := &cobra.Command{
		Use:   "user",
		Short: "Add, list, remove web console accounts and set their passwords",
		Long: `Web console accounts live in the data directory's console-password file (salted PBKDF2 hashes,
mode 0600) or, in cluster mode ([data] database set), in the cluster's PostgreSQL database, shared by
every node. Without --admin or --token these commands edit that file (run them as the user that runs
mxgate serve; the daemon need not run) or that database. With --admin or --token they ask the running daemon through its
admin API instead, which needs the admin token but no access to the data directory. An administrator may
change everything; a viewer sees every page but changes nothing; the last administrator cannot be
removed. Passwords are read from the terminal (asked twice, not echoed) or, when standard input is not a
terminal, from its first line; never from the command line.`,
	}
	var role string
	add := &cobra.Command{
		Use:   "add NAME --role administrator|viewer",
		Short: "Add an account",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := console.ParseRole(role)
			if err != nil {
				return err
			}
			if err := console.ValidAccountName(args[0]); err != nil {
				return err
			}
			if viaAPI(g) {
				c, err := adminClient(g)
				if err != nil {
					return err
				}
				pw, err := readNewPassword(g, args[0])
				if err != nil {
					return err
				}
				if err := c.AddAccount(cmd.Context(), admin.NewAccount{Name: args[0], Role: string(r), Password: pw}); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "added %s (%s) through the admin API at %s\n", args[0], r, c.BaseURL)
				return nil
			}
			st, err := localAccounts(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer st.close()
			pw, err := readNewPassword(g, args[0])
			if err != nil {
				return err
			}
			if err := st.AddAccount(cmd.Context(), admin.NewAccount{Name: args[0], Role: string(r), Password: pw}); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "added %s (%s) to %s\n", args[0], r, st.where)
			return nil
		},
	}
	add.Flags().StringVar(&role, "role", "", "administrator or viewer (required)")
	add.MarkFlagRequired("role")
	passwd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Set an account's password (its console sessions end)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if viaAPI(g) {
				c, err := adminClient(g)
				if err != nil {
					return err
				}
				if err := apiFindAccount(cmd.Context(), c, args[0]); err != nil {
					return err
				}
				pw, err := readNewPassword(g, args[0])
				if err != nil {
					return err
				}
				if err := c.SetAccountPassword(cmd.Context(), args[0], pw); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "password of %s changed; its console sessions end\n", args[0])
				return nil
			}
			st, err := localAccounts(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer st.close()
			if err := findAccount(cmd.Context(), st, args[0]); err != nil {
				return err
			}
			pw, err := readNewPassword(g, args[0])
			if err != nil {
				return err
			}
			if err := st.SetAccountPassword(cmd.Context(), args[0], pw); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "password of %s changed; its console sessions end\n", args[0])
			return nil
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove an account (its console sessions end; the last administrator stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if viaAPI(g) {
				c, err := adminClient(g)
				if err != nil {
					return err
				}
				if err := c.RemoveAccount(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "removed %s\n", args[0])
				return nil
			}
			st, err := localAccounts(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer st.close()
			if err := st.RemoveAccount(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed %s\n", args[0])
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the accounts and their roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			accts, err := listAccounts(cmd.Context(), g)
			if err != nil {
				return err
			}
			if g.json {
				rows := accts
				if rows == nil {
					rows = []admin.Account{}
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE")
			for _, a := range accts {
				fmt.Fprintf(tw, "%s\t%s\n", a.Name, a.Role)
			}
			return tw.Flush()
		},
	}
	passwd.ValidArgsFunction = accountNames(g)
	remove.ValidArgsFunction = accountNames(g)
	user.AddCommand(add, passwd, remove, list)
	cons.AddCommand(user)
	root.AddCommand(cons)
}

// viaAPI reports whether the console user commands go through a running daemon's admin API: when the
// administrator named one with --admin or --token.
func viaAPI(g *globals) bool { return g.adminURL != "" || g.token != "" }

// listAccounts lists the accounts through the admin API or from the data directory (see viaAPI).
func listAccounts(ctx context.Context, g *globals) ([]admin.Account, error) {
	if viaAPI(g) {
		c, err := adminClient(g)
		if err != nil {
			return nil, err
		}
		return c.Accounts(ctx)
	}
	st, err := localAccounts(ctx, g)
	if err != nil {
		return nil, err
	}
	defer st.close()
	return st.Accounts(ctx)
}

// apiFindAccount checks that the daemon has account name before a password is asked for.
func apiFindAccount(ctx context.Context, c *admin.Client, name string) error {
	accts, err := c.Accounts(ctx)
	if err != nil {
		return err
	}
	for _, a := range accts {
		if a.Name == name {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", console.ErrNoAccount, name)
}

// accountStore is the console accounts' store the commands edit without --admin, and what to call it.
type accountStore struct {
	admin.AccountsAPI
	where string
	close func()
}

// localAccounts opens the store the daemon keeps the console accounts in: the data directory's password
// file, or, when [data] database names a cluster's PostgreSQL database, that database.
func localAccounts(ctx context.Context, g *globals) (accountStore, error) {
	cfg, _, err := g.loadConfig()
	if err != nil {
		return accountStore{}, err
	}
	if cfg.Data.Database != "" {
		pg, err := store.OpenPostgres(ctx, cfg.Data.Database)
		if err != nil {
			return accountStore{}, fmt.Errorf("console accounts are in the cluster's shared database, which does not answer (%w); or use --admin with a running node", err)
		}
		// Seed as a starting node would, before any change: a table this command started would otherwise
		// hold no administrator, and the data directory's password file would never be copied.
		st := &console.PostgresAccounts{PG: pg}
		pwFile := filepath.Join(cfg.Data.Dir, console.PasswordFileName)
		seeded, err := st.Seed(ctx, pwFile)
		if err != nil {
			pg.Close()
			return accountStore{}, err
		}
		where := "the shared database " + store.Redact(cfg.Data.Database)
		switch {
		case seeded.Copied > 0:
			fmt.Fprintf(g.stderr, "mxgate: the shared database held no console account: copied the %d accounts of %s into it\n", seeded.Copied, pwFile)
		case seeded.Password != "":
			fmt.Fprintf(g.stderr, "mxgate: the shared database held no console account: web console password for the first login, account %s: %s (stored hashed in %s; change it on the Account page)\n", console.BootstrapAccount, seeded.Password, where)
		}
		return accountStore{AccountsAPI: st, where: where, close: pg.Close}, nil
	}
	path := filepath.Join(cfg.Data.Dir, console.PasswordFileName)
	if _, err := os.Stat(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return accountStore{}, fmt.Errorf("console accounts: %w (run as the user that runs mxgate serve)", err)
	}
	return accountStore{AccountsAPI: console.PasswordFile{Path: path}, where: path, close: func() {}}, nil
}

func findAccount(ctx context.Context, st accountStore, name string) error {
	accts, err := st.Accounts(ctx)
	if err != nil {
		return err
	}
	for _, a := range accts {
		if a.Name == name {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", console.ErrNoAccount, name)
}

// readNewPassword reads a new password for account: from the terminal, asked twice without echo, when
// standard input is one; otherwise the first line of standard input.
func readNewPassword(g *globals, account string) (string, error) {
	var pw string
	if f, ok := g.stdin.(*os.File); ok {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			p1, err := readNoEcho(f, t, g.stderr, fmt.Sprintf("New console password for %s: ", account))
			if err != nil {
				return "", err
			}
			p2, err := readNoEcho(f, t, g.stderr, "Again: ")
			if err != nil {
				return "", err
			}
			if p1 != p2 {
				return "", errors.New("the two passwords differ; nothing changed")
			}
			pw = p1
		}
	}
	if pw == "" {
		line, err := bufio.NewReader(g.stdin).ReadString('\n')
		if err != nil && (!errors.Is(err, io.EOF) || line == "") {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if n := len([]rune(pw)); n < console.MinPasswordLength {
		return "", fmt.Errorf("the password has %d characters; it needs at least %d", n, console.MinPasswordLength)
	}
	return pw, nil
}

// readNoEcho prompts on w and reads one line from the terminal f with echo off, restoring t after.
func readNoEcho(f *os.File, t *unix.Termios, w io.Writer, prompt string) (string, error) {
	fmt.Fprint(w, prompt)
	quiet := *t
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	line, err := bufio.NewReader(f).ReadString('\n')
	fmt.Fprintln(w)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("terminal: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// accountNames completes the first argument with the names of the console accounts.
func accountNames(g *globals) completer {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		accts, err := listAccounts(ctx, g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, a := range accts {
			if strings.HasPrefix(a.Name, toComplete) {
				out = append(out, a.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
