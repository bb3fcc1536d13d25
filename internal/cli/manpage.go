package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mxgate/mxgate/internal/version"
)

// manCmd writes one man page per command, generated from the command tree, so that the pages say what the
// binary does. Written by hand (roff man(7) macros) rather than with cobra/doc, which would add go-md2man.
func manCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write the man pages (section 1) of every command into DIR",
		Long: "Writes mxgate.1 and one page per command (mxgate-queue-list.1, ...) into DIR, generated from the\n" +
			"commands, their flags and help texts. Install them in /usr/share/man/man1.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := writeManPages(cmd.Root(), args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "wrote %d man pages to %s\n", n, args[0])
			return err
		},
	}
}

// writeManPages writes the pages of root and every command below it that is available and not hidden.
func writeManPages(root *cobra.Command, dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	n := 0
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !c.IsAvailableCommand() && c != root {
			return nil
		}
		if err := os.WriteFile(filepath.Join(dir, manName(c)+".1"), manPage(c), 0o644); err != nil {
			return err
		}
		n++
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return n, walk(root)
}

// manName is "mxgate-queue-list" for `mxgate queue list`.
func manName(c *cobra.Command) string { return strings.ReplaceAll(c.CommandPath(), " ", "-") }

func manPage(c *cobra.Command) []byte {
	var b bytes.Buffer
	name := manName(c)
	fmt.Fprintf(&b, ".TH %s 1 \"\" %s \"mxgate manual\"\n", roffQuote(strings.ToUpper(name)), roffQuote(version.Get().Version))
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", roffText(name), roffText(c.Short))
	b.WriteString(".SH SYNOPSIS\n")
	fmt.Fprintf(&b, ".B %s\n", roffText(c.CommandPath()))
	if rest := strings.TrimSpace(strings.TrimPrefix(c.UseLine(), c.CommandPath())); rest != "" {
		fmt.Fprintf(&b, "%s\n", roffText(rest))
	}
	b.WriteString(".SH DESCRIPTION\n")
	desc := c.Long
	if desc == "" {
		desc = c.Short + "."
	}
	writeParagraphs(&b, desc)
	if subs := availableSubcommands(c); len(subs) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for _, s := range subs {
			fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roffText(s.Name()), roffText(s.Short))
		}
	}
	writeFlags(&b, "OPTIONS", c.NonInheritedFlags())
	writeFlags(&b, "GLOBAL OPTIONS", c.InheritedFlags())
	if c.Example != "" {
		b.WriteString(".SH EXAMPLES\n.nf\n")
		b.WriteString(roffLines(c.Example))
		b.WriteString(".fi\n")
	}
	b.WriteString(".SH SEE ALSO\n")
	var see []string
	if c.HasParent() {
		see = append(see, fmt.Sprintf(".BR %s (1)", manName(c.Parent())))
	}
	for _, s := range availableSubcommands(c) {
		see = append(see, fmt.Sprintf(".BR %s (1)", manName(s)))
	}
	if len(see) == 0 {
		see = append(see, ".BR mxgate (1)")
	}
	b.WriteString(strings.Join(see, ",\n") + "\n")
	return b.Bytes()
}

func availableSubcommands(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			out = append(out, s)
		}
	}
	return out
}

func writeFlags(b *bytes.Buffer, title string, fs *pflag.FlagSet) {
	var items []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		form := "\\-\\-" + roffText(f.Name)
		if f.Shorthand != "" {
			form = "\\-" + roffText(f.Shorthand) + ", " + form
		}
		if f.Value.Type() != "bool" {
			form += " " + roffText(strings.ToUpper(f.Value.Type()))
		}
		usage := f.Usage
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0" && !strings.Contains(usage, "default") {
			usage += " (default " + f.DefValue + ")"
		}
		items = append(items, fmt.Sprintf(".TP\n.B %s\n%s\n", form, roffText(usage)))
	})
	if len(items) == 0 {
		return
	}
	b.WriteString(".SH " + title + "\n")
	for _, it := range items {
		b.WriteString(it)
	}
}

// writeParagraphs writes text, blank lines separating paragraphs; indented lines are kept as they are.
func writeParagraphs(b *bytes.Buffer, text string) {
	for i, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		if strings.HasPrefix(para, " ") || strings.Contains(para, "\n ") {
			b.WriteString(".nf\n" + roffLines(para) + ".fi\n")
			continue
		}
		b.WriteString(roffLines(para))
	}
}

// roffLines escapes every line of text.
func roffLines(text string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(roffText(line) + "\n")
	}
	return b.String()
}

// roffText escapes a line for man(7): backslashes, hyphens (so that options copy as ASCII), and a leading
// dot or quote that roff would read as a request.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func roffQuote(s string) string {
	return `"` + strings.ReplaceAll(roffText(s), `"`, `\(dq`) + `"`
}
