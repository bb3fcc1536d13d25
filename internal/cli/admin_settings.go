package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/settings"
)

// callBody makes one API request with in as its JSON body (nil for none) and returns the raw JSON answer.
func callBody(ctx context.Context, g *globals, method, path string, in any) (json.RawMessage, error) {
	c, err := adminClient(g)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.Do(ctx, method, path, in, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// settingsCmd is `mxgate settings list|get|set|unset`: one setting at a time, staged until `config commit`.
func settingsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "settings",
		Short: "Show and stage the committed settings (Sender.EnableMTASTS, Domain.<domain>.TLS, ...)",
		Long: "Settings changes are staged: review them with `mxgate config diff` and make them live on every node " +
			"with `mxgate config commit -m NOTE`.",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List every setting: committed value, default and staged change",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/settings", printSettingsList),
	}, &cobra.Command{
		Use:   "get KEY",
		Short: "Show one setting",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, admin.SettingPath(args[0]), printSetting)(cmd, args)
		},
	}, &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Stage a new value for a setting",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := args[1]
			raw, err := callBody(cmd.Context(), g, http.MethodPut, admin.SettingPath(args[0]), admin.SetRequest{Value: &v})
			if err != nil {
				return err
			}
			return output(g, raw, printStaged)
		},
	}, &cobra.Command{
		Use:   "unset KEY",
		Short: "Stage the removal of a setting (back to its default; a domain rule is dropped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := callBody(cmd.Context(), g, http.MethodDelete, admin.SettingPath(args[0]), nil)
			if err != nil {
				return err
			}
			return output(g, raw, printStaged)
		},
	})
	return cmd
}

// configCmd is `mxgate config diff|commit|discard|history|rollback|apply`: the staged changes as a whole.
func configCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Review, commit, discard and roll back settings changes",
	}
	diff := &cobra.Command{
		Use:   "diff",
		Short: "Show the staged changes against the generation in force",
		Args:  cobra.NoArgs,
		RunE:  show(g, "/api/v1/config/diff", printDiff),
	}

	var note, author string
	commit := &cobra.Command{
		Use:   "commit -m NOTE",
		Short: "Make the staged changes a new generation, live at once on every node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(note) == "" {
				return errors.New(`a note is required: mxgate config commit -m "why this changes"`)
			}
			raw, err := callBody(cmd.Context(), g, http.MethodPost, "/api/v1/config/commit",
				admin.CommitRequest{Note: note, Author: authorOr(author)})
			if err != nil {
				return err
			}
			return output(g, raw, func(w io.Writer, c admin.CommitResult) error {
				_, err := fmt.Fprintf(w, "committed generation %d\n", c.Generation)
				return err
			})
		},
	}
	commit.Flags().StringVarP(&note, "message", "m", "", "why the configuration changes (required)")
	commit.Flags().StringVar(&author, "author", "", "who commits (default: the login name)")

	discard := &cobra.Command{
		Use:   "discard",
		Short: "Drop the staged changes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := callBody(cmd.Context(), g, http.MethodPost, "/api/v1/config/discard", nil)
			if err != nil {
				return err
			}
			return output(g, raw, func(w io.Writer, d admin.ConfigDiff) error {
				if len(d.Changes) == 0 {
					_, err := fmt.Fprintln(w, "no staged changes")
					return err
				}
				_, err := fmt.Fprintf(w, "discarded %d staged %s\n", len(d.Changes), plural(len(d.Changes), "change", "changes"))
				return err
			})
		},
	}
	var histDiff bool
	history := &cobra.Command{
		Use:   "history [--diff]",
		Short: "List the committed generations, newest first (--diff: with what each changed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if histDiff {
				return show(g, "/api/v1/config/history", printHistoryDiff)(cmd, args)
			}
			return show(g, "/api/v1/config/history", printHistory)(cmd, args)
		},
	}
	history.Flags().BoolVar(&histDiff, "diff", false, "show what each generation changed against the one before")

	var rbNote, rbAuthor string
	var rbDiscard bool
	rollback := &cobra.Command{
		Use:   "rollback N [-m NOTE] [--discard-staged]",
		Short: "Commit a new generation with the settings of generation N (refused while changes are staged)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return fmt.Errorf("invalid generation %q: want a number from `mxgate config history`", args[0])
			}
			raw, err := callBody(cmd.Context(), g, http.MethodPost, "/api/v1/config/rollback",
				admin.RollbackRequest{Generation: n, Note: rbNote, Author: authorOr(rbAuthor), DiscardStaged: rbDiscard})
			if err != nil {
				var apiErr *admin.APIError
				if errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict && !rbDiscard {
					return fmt.Errorf("%w\n(see them with `mxgate config diff`; add --discard-staged to drop them with the rollback)", err)
				}
				return err
			}
			return output(g, raw, func(w io.Writer, c admin.CommitResult) error {
				for _, d := range c.Discarded {
					if _, err := fmt.Fprintf(w, "discarded staged change: %s\n", d.Key); err != nil {
						return err
					}
				}
				if c.InForce {
					_, err := fmt.Fprintf(w, "generation %d has the settings in force (generation %d): nothing to roll back\n", n, c.Generation)
					return err
				}
				_, err := fmt.Fprintf(w, "rolled back to generation %d: committed generation %d\n", n, c.Generation)
				return err
			})
		},
	}
	rollback.Flags().BoolVar(&rbDiscard, "discard-staged", false, "drop the staged changes with the rollback (refused otherwise)")
	rollback.Flags().StringVarP(&rbNote, "message", "m", "", `why (default: "rollback to generation N")`)
	rollback.Flags().StringVar(&rbAuthor, "author", "", "who rolls back (default: the login name)")

	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Stage a whole settings file: keys it lacks are removed",
		Long: "FILE is TOML with one top-level [settings] table holding every setting to keep, keys quoted:\n\n" +
			"  [settings]\n  \"Sender.EnableMTASTS\" = false\n  \"Domain.example.com.TLS\" = \"required-verify\"\n\n" +
			"Committed settings missing from the file are staged for removal. Review with `mxgate config diff`, " +
			"then `mxgate config commit -m NOTE`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vals, err := readSettingsFile(args[0])
			if err != nil {
				return err
			}
			c, err := adminClient(g)
			if err != nil {
				return err
			}
			req := admin.ApplyRequest{Settings: map[string]json.RawMessage{}}
			for k, v := range vals {
				b, _ := json.Marshal(v) // a string always marshals
				req.Settings[k] = b
			}
			var raw json.RawMessage
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/config/apply", req, &raw); err != nil {
				var ae *admin.APIError
				if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				return err
			}
			return output(g, raw, func(w io.Writer, d admin.ConfigDiff) error {
				if len(d.Changes) == 0 {
					_, err := fmt.Fprintf(w, "%s matches generation %d: nothing staged\n", args[0], d.Generation)
					return err
				}
				if err := printDiff(w, d); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "staged %d %s from %s; commit with: mxgate config commit -m NOTE\n",
					len(d.Changes), plural(len(d.Changes), "change", "changes"), args[0])
				return err
			})
		},
	}
	cmd.AddCommand(diff, commit, discard, history, rollback, apply, configExportCmd(g))
	return cmd
}

// authorOr returns given, or the login name of the user running the command ("" when unknown: the server
// then names the client by its address).
func authorOr(given string) string {
	if given != "" {
		return given
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// readSettingsFile reads a settings file for `config apply`: its only top-level table is [settings], whose
// values are read by settings.FromTOML, like the bootstrap file's [settings] table.
func readSettingsFile(path string) (map[string]string, error) {
	var doc map[string]any
	if _, err := toml.DecodeFile(path, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(doc)) {
		if k != "settings" {
			unknown = append(unknown, "["+k+"]")
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%s: unknown top-level %s %s: only [settings] is allowed",
			path, plural(len(unknown), "table", "tables"), strings.Join(unknown, ", "))
	}
	tbl, ok := doc["settings"].(map[string]any)
	if !ok {
		if _, present := doc["settings"]; present {
			return nil, fmt.Errorf("%s: settings must be a table: [settings]", path)
		}
		return nil, fmt.Errorf("%s: no [settings] table (an empty [settings] table removes every setting)", path)
	}
	vals, err := settings.FromTOML(tbl)
	if err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	return vals, nil
}

// Text output of the settings verbs.

func settingSource(s admin.Setting) string {
	if s.Set {
		return "set"
	}
	return "default"
}

func stagedText(c *admin.SettingChange) string {
	switch {
	case c == nil:
		return "-"
	case c.NewSet:
		return "-> " + c.New
	case c.Default != "":
		return "unset (default " + c.Default + ")"
	default:
		return "unset"
	}
}

func printSettingsList(w io.Writer, list []admin.Setting) error {
	tw := newTable(w)
	row(tw, "KEY", "VALUE", "SOURCE", "STAGED")
	for _, s := range list {
		row(tw, s.Key, orDash(s.Value), settingSource(s), stagedText(s.Staged))
	}
	return tw.Flush()
}

func printSetting(w io.Writer, s admin.Setting) error {
	tw := newTable(w)
	row(tw, "key", s.Key)
	row(tw, "kind", s.Kind)
	row(tw, "value", orDash(s.Value))
	row(tw, "source", settingSource(s))
	row(tw, "default", orDash(s.Default))
	row(tw, "staged", stagedText(s.Staged))
	row(tw, "help", orDash(s.Help))
	return tw.Flush()
}

// printStaged says what `settings set` or `settings unset` staged.
func printStaged(w io.Writer, s admin.Setting) error {
	var err error
	switch c := s.Staged; {
	case c == nil && s.Set:
		_, err = fmt.Fprintf(w, "%s is already %s: nothing staged\n", s.Key, s.Value)
	case c == nil:
		_, err = fmt.Fprintf(w, "%s is not set: nothing staged\n", s.Key)
	default:
		_, err = fmt.Fprintf(w, "staged: %s\nreview with: mxgate config diff\nmake it live with: mxgate config commit -m NOTE\n", diffLine(*c))
	}
	return err
}

// diffLine describes one staged change: "~ key: old -> new", "+ key: new" when nothing was in effect before,
// "- key (was "old")" for a removal.
func diffLine(c admin.SettingChange) string {
	switch {
	case !c.NewSet:
		s := fmt.Sprintf("- %s (was %q)", c.Key, c.Old)
		if c.Default != "" {
			s += fmt.Sprintf(", back to the default %q", c.Default)
		}
		return s
	case c.OldSet:
		return fmt.Sprintf("~ %s: %s -> %s", c.Key, c.Old, c.New)
	case c.Default != "" && c.Default != c.New:
		// The default was in effect: show the change of the effective value.
		return fmt.Sprintf("~ %s: %s -> %s", c.Key, c.Default, c.New)
	default:
		return fmt.Sprintf("+ %s: %s", c.Key, c.New)
	}
}

func printDiff(w io.Writer, d admin.ConfigDiff) error {
	if len(d.Changes) == 0 {
		_, err := fmt.Fprintf(w, "no staged changes (generation %d is in force)\n", d.Generation)
		return err
	}
	for _, c := range d.Changes {
		if _, err := fmt.Fprintln(w, clean(diffLine(c))); err != nil {
			return err
		}
	}
	return nil
}

func printHistory(w io.Writer, hist []admin.Generation) error {
	tw := newTable(w)
	row(tw, "GENERATION", "COMMITTED", "AUTHOR", "NOTE")
	for _, g := range hist {
		note := g.Note
		if g.RollbackOf != 0 && !strings.Contains(note, "generation "+strconv.Itoa(g.RollbackOf)) {
			note += fmt.Sprintf(" (rollback to generation %d)", g.RollbackOf)
		}
		row(tw, strconv.Itoa(g.Generation), fmtTime(g.Committed), orDash(g.Author), orDash(note))
	}
	return tw.Flush()
}
