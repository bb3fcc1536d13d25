package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/admin"
)

// configExportCmd prints a committed generation as a settings file that `mxgate config apply` reads back:
// applying the export of the generation in force stages nothing.
func configExportCmd(g *globals) *cobra.Command {
	var gen int
	cmd := &cobra.Command{
		Use:   "export [--generation N]",
		Short: "Print the committed settings as a file for `mxgate config apply`",
		Long: "Prints the settings set in the generation in force (or generation N) as TOML with one [settings]\n" +
			"table. Keep it under version control; `mxgate config apply FILE` stages it back, and applying the\n" +
			"export of the generation in force stages nothing. Settings left at their defaults are not listed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := call(cmd.Context(), g, http.MethodGet, "/api/v1/config/history")
			if err != nil {
				return err
			}
			return output(g, raw, func(w io.Writer, hist []admin.Generation) error {
				if len(hist) == 0 {
					return errors.New("no committed generation")
				}
				sel := hist[0]
				if gen != 0 {
					i := slices.IndexFunc(hist, func(h admin.Generation) bool { return h.Generation == gen })
					if i < 0 {
						return fmt.Errorf("no generation %d: see `mxgate config history`", gen)
					}
					sel = hist[i]
				}
				return writeSettingsFile(w, sel)
			})
		},
	}
	cmd.Flags().IntVar(&gen, "generation", 0, "the generation to export (default: the one in force)")
	return cmd
}

// writeSettingsFile writes gen's values in the format readSettingsFile reads. Values that read as booleans
// or integers are written bare, the rest as strings; readSettingsFile turns all of them back into the
// same strings.
func writeSettingsFile(w io.Writer, gen admin.Generation) error {
	vals := map[string]any{}
	for k, v := range gen.Values {
		vals[k] = settingValue(v)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# mxgate settings, generation %d, committed %s", gen.Generation, fmtTime(gen.Committed))
	if gen.Author != "" {
		fmt.Fprintf(&buf, " by %s", gen.Author)
	}
	buf.WriteString(".\n# Stage with: mxgate config apply FILE; settings missing here are removed.\n\n")
	enc := toml.NewEncoder(&buf)
	if err := enc.Encode(map[string]map[string]any{"settings": vals}); err != nil {
		return err
	}
	if len(vals) == 0 {
		// The encoder writes nothing for an empty table, but apply needs it: it means "every default".
		buf.WriteString("[settings]\n")
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func settingValue(v string) any {
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && strconv.FormatInt(n, 10) == v {
		return n
	}
	return v
}

// printHistoryDiff prints each generation with what it changed against the one before it.
func printHistoryDiff(w io.Writer, hist []admin.Generation) error {
	for i, gen := range hist {
		note := gen.Note
		if gen.RollbackOf != 0 {
			note += fmt.Sprintf(" (rollback to generation %d)", gen.RollbackOf)
		}
		fmt.Fprintf(w, "generation %d  %s  %s  %s\n", gen.Generation, fmtTime(gen.Committed), orDash(gen.Author), orDash(note))
		var prev map[string]string
		if i+1 < len(hist) {
			prev = hist[i+1].Values
		} else if gen.Generation > 1 {
			fmt.Fprintln(w, "  (the generation before is not listed)")
			continue
		}
		changes := 0
		for _, k := range slices.Sorted(maps.Keys(gen.Values)) {
			old, had := prev[k]
			switch {
			case !had:
				fmt.Fprintf(w, "  + %s: %s\n", k, gen.Values[k])
			case old != gen.Values[k]:
				fmt.Fprintf(w, "  ~ %s: %s -> %s\n", k, old, gen.Values[k])
			default:
				continue
			}
			changes++
		}
		for _, k := range slices.Sorted(maps.Keys(prev)) {
			if _, ok := gen.Values[k]; !ok {
				fmt.Fprintf(w, "  - %s (was %q)\n", k, prev[k])
				changes++
			}
		}
		if changes == 0 {
			fmt.Fprintln(w, "  (no change)")
		}
	}
	return nil
}
