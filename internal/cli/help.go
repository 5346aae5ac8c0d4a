package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Help is what `-h` prints: the description, then the usage with the
// examples.
func Help(c *cobra.Command) string {
	var b strings.Builder
	desc := c.Long
	if desc == "" {
		desc = c.Short
	}
	if desc = strings.TrimSpace(desc); desc != "" {
		b.WriteString(desc + "\n\n")
	}
	b.WriteString(usage(c, true))
	return b.String()
}

// Usage is what a usage error prints after its line: the usage line,
// the subcommands or flags, and where the examples are.
func Usage(c *cobra.Command) string { return usage(c, false) }

func usage(c *cobra.Command, examples bool) string {
	var b strings.Builder
	b.WriteString("usage: " + c.UseLine() + "\n")
	if examples && c.Example != "" {
		b.WriteString("\nExamples:\n" + strings.TrimRight(c.Example, "\n") + "\n")
	}
	if c.HasAvailableSubCommands() {
		writeCommands(&b, c)
	}
	if fs := visible(c, c.LocalFlags()); fs.HasAvailableFlags() {
		b.WriteString("\nFlags:\n" + fs.FlagUsages())
	}
	if fs := visible(c, c.InheritedFlags()); fs.HasAvailableFlags() {
		b.WriteString("\nGlobal flags:\n" + fs.FlagUsages())
	}
	switch {
	case c.HasAvailableSubCommands():
		fmt.Fprintf(&b, "\nRun '%s <command> -h' for a command's usage, flags and examples.\n", c.CommandPath())
	case !examples && c.Example != "":
		fmt.Fprintf(&b, "\nRun '%s -h' for examples.\n", c.CommandPath())
	}
	return b.String()
}

// writeCommands lists c's subcommands, by group when it has groups.
func writeCommands(b *strings.Builder, c *cobra.Command) {
	width := 0
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() || sub.Name() == "help" {
			width = max(width, len(sub.Name()))
		}
	}
	list := func(title, group string) {
		var lines []string
		for _, sub := range c.Commands() {
			if (sub.IsAvailableCommand() || sub.Name() == "help") && sub.GroupID == group {
				lines = append(lines, fmt.Sprintf("  %-*s  %s\n", width, sub.Name(), sub.Short))
			}
		}
		if len(lines) > 0 {
			b.WriteString("\n" + title + "\n" + strings.Join(lines, ""))
		}
	}
	if len(c.Groups()) == 0 {
		list("Commands:", "")
		return
	}
	for _, g := range c.Groups() {
		list(g.Title, g.ID)
	}
	list("Other commands:", "")
}

// visible is fs without the flags c ignores or hides.
func visible(c *cobra.Command, fs *pflag.FlagSet) *pflag.FlagSet {
	out := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	out.SortFlags = false
	fs.VisitAll(func(f *pflag.Flag) {
		if !ignored(c, f.Name) {
			out.AddFlag(f)
		}
	})
	return out
}

// describeBuiltins gives cobra's own help and completion commands the
// examples every command has.
func describeBuiltins(root *cobra.Command) {
	name := root.Name()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Args = cobra.ArbitraryArgs // the command to help with
			c.Short = "Help about any command"
			c.Example = fmt.Sprintf("  %[1]s help\n  %[1]s help %[2]s", name, firstCommand(root))
		case "completion":
			c.Annotations = map[string]string{annGroup: "true"}
			c.Use = "completion <shell>"
			c.Args, c.RunE = cobra.ArbitraryArgs, groupRun
			c.Short = "Print a shell completion script (bash, zsh, fish, powershell)"
			c.Example = fmt.Sprintf("  source <(%[1]s completion bash)\n  %[1]s completion zsh > \"${fpath[1]}/_%[1]s\"", name)
			for _, sh := range c.Commands() {
				switch sh.Name() {
				case "bash":
					sh.Example = fmt.Sprintf("  # this shell\n  source <(%[1]s completion bash)\n  # every new shell (needs the bash-completion package)\n  %[1]s completion bash > /etc/bash_completion.d/%[1]s", name)
				case "zsh":
					sh.Example = fmt.Sprintf("  # this shell\n  source <(%[1]s completion zsh)\n  # every new shell\n  %[1]s completion zsh > \"${fpath[1]}/_%[1]s\"", name)
				case "fish":
					sh.Example = fmt.Sprintf("  %[1]s completion fish | source\n  %[1]s completion fish > ~/.config/fish/completions/%[1]s.fish", name)
				case "powershell":
					sh.Example = fmt.Sprintf("  %[1]s completion powershell | Out-String | Invoke-Expression", name)
				}
			}
		}
	}
}

// firstCommand names a subcommand of root for an example.
func firstCommand(root *cobra.Command) string {
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && c.Name() != "help" && c.Name() != "completion" {
			return c.Name()
		}
	}
	return "help"
}
