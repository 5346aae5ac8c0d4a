package clidoc

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/internal/cli"
)

// MistakeMarker, on the line before a fenced block, leaves the block
// unchecked: it shows a mistake on purpose (and the message it gets).
const MistakeMarker = "<!-- cli: shows a mistake -->"

// CheckLines finds the command lines of root's program in the code of a
// markdown text (fenced blocks and `inline` spans) and checks each
// against the tree: its command words name a command, and its flags are
// flags that command takes. It returns the problems ("LINE: `…`: what")
// and how many command lines it checked. Placeholders (<command>, …,
// UPPER-CASE words) end the command words; shell syntax (|, >, <, ;, &&,
// #, $( … )) ends the command line.
func CheckLines(root *cobra.Command, text string) (problems []string, checked int) {
	// The program's name followed by a space, where a command begins:
	// see commandStart.
	re := regexp.MustCompile(`(?:^|[\s"'(/=])` + regexp.QuoteMeta(root.Name()) + ` `)
	fenced, skip, skipNext := false, false, false
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			skip = fenced && skipNext
			skipNext = false
			continue
		}
		if strings.Contains(line, MistakeMarker) {
			skipNext = true
			continue
		}
		if skip {
			continue
		}
		var spans []string
		if fenced {
			spans = []string{line}
		} else {
			parts := strings.Split(line, "`")
			for j := 1; j < len(parts); j += 2 {
				spans = append(spans, parts[j])
			}
		}
		for _, span := range spans {
			for _, loc := range re.FindAllStringIndex(span, -1) {
				if !commandStart.MatchString(span[:loc[1]-len(root.Name())-1]) {
					continue // a word in a sentence: "stop the other outpost process"
				}
				rest := span[loc[1]:]
				if p := check(root, rest); p != "" {
					problems = append(problems, fmt.Sprintf("%d: `%s %s`: %s", i+1, root.Name(), strings.TrimSpace(cut(rest)), p))
				}
				checked++
			}
		}
	}
	return problems, checked
}

// commandStart matches what may come before a command on a line: nothing,
// a prompt, sudo, environment assignments, a path to the binary; or a
// shell's $( | ; &&.
var commandStart = regexp.MustCompile(`(^\s*(\$\s+)?(sudo\s+)?([A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(\S*/)?$)|(\$\(\s*$)|([|;&]\s*$)`)

// cut ends a command line at shell syntax.
func cut(s string) string {
	for _, stop := range []string{" | ", " > ", " < ", ";", " && ", " || ", " #", ")", " \\"} {
		if i := strings.Index(s, stop); i >= 0 {
			s = s[:i]
		}
	}
	return s
}

var placeholder = regexp.MustCompile(`^(<.*>|\[.*\]|[A-Z][A-Z0-9_|…-]*|…|\.\.\.|\$.*|%.*)$`)

// check resolves one command line (the words after the program's name)
// and returns what is wrong with it, or "".
func check(root *cobra.Command, line string) string {
	words := strings.Fields(cut(line))
	for _, w := range words {
		if strings.HasPrefix(w, "-") {
			break
		}
		if strings.HasSuffix(w, ":") {
			return "" // a message the program printed ("outpostctl kv put: …")
		}
	}
	c := root
	var flags []string
	resolving := true
	for _, w := range words {
		switch {
		case w == "--":
			resolving = false
		case strings.HasPrefix(w, "--"):
			flags = append(flags, strings.SplitN(strings.TrimPrefix(w, "--"), "=", 2)[0])
		case !resolving || strings.HasPrefix(w, "-"):
		case cli.IsGroup(c) && c.HasAvailableSubCommands() && !placeholder.MatchString(w):
			var next *cobra.Command
			for _, alt := range strings.Split(w, "|") {
				sub := subcommand(c, alt)
				if sub == nil {
					return fmt.Sprintf("no command %q in %q", alt, c.CommandPath())
				}
				if next == nil {
					next = sub
				}
			}
			c = next
		default:
			resolving = false
		}
	}
	takes := map[string]bool{"help": true, "version": c == root}
	for _, f := range cli.FlagNames(c) {
		takes[strings.TrimPrefix(f, "--")] = true
	}
	for _, f := range flags {
		if !takes[f] && !placeholder.MatchString(f) {
			return fmt.Sprintf("%q does not take --%s", c.CommandPath(), f)
		}
	}
	return ""
}

func subcommand(c *cobra.Command, name string) *cobra.Command {
	for _, sub := range c.Commands() {
		if sub.Name() == name || sub.HasAlias(name) {
			return sub
		}
	}
	return nil
}
