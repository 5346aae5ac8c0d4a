// Package cli is what Outpost's three commands (outpost, outpostctl and
// outpost-agent) share on top of spf13/cobra, so they behave alike:
//
//   - `-h` on any command prints that command's description, usage line,
//     examples and flags to standard output and exits 0;
//   - a mistaken command line (a flag the command does not take, a
//     missing or extra argument, an unknown subcommand) prints one line
//     naming the mistake, then the command's usage, to standard error,
//     and the error is ErrUsage (exit 2);
//   - `version` and `--version` print the build (internal/buildinfo).
//
// Only cmd/ imports it. Commands are plain cobra.Commands; Setup applies
// the shared behaviour to a whole tree once it is built, and Execute
// runs it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-mesh/outpost/internal/editdist"
)

// ErrUsage marks a usage error: the command line was wrong, nothing ran.
// The commands exit 2 on it.
var ErrUsage = errors.New("usage error")

// UsageError is a mistaken command line. Execute prints it as one line,
// "CMD: MSG", followed by the command's usage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrUsage) true.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// Usagef returns a UsageError: what is wrong with the command line, in
// the user's terms ("--kind is required: say what the dispatch is").
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Annotations on commands.
const (
	annGroup   = "outpost.group"   // the command only holds subcommands
	annIgnores = "outpost.ignores" // inherited flags the command refuses, comma-separated
)

// Group returns a command that only holds subcommands. Run alone, or with
// a word that names none of them, it is a usage error listing them.
func Group(use, short, example string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Example: example,
		Annotations: map[string]string{annGroup: "true"},
		Args:        cobra.ArbitraryArgs,
		RunE:        groupRun,
	}
}

func groupRun(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		if !c.HasParent() {
			return Usagef("missing command")
		}
		return Usagef("missing subcommand")
	}
	var subs []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			subs = append(subs, sub.Name())
		}
	}
	name := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), c.Root().Name()), " ")
	return Usagef("unknown command %q%s", strings.TrimSpace(name+" "+args[0]), didYouMean(closest(args[0], subs), ""))
}

// IsGroup reports whether c was made by Group.
func IsGroup(c *cobra.Command) bool { return c.Annotations[annGroup] == "true" }

// Ignores marks inherited (global) flags that c and its subcommands do
// not use, such as outpostctl's --addr on a command that asks no node:
// their help leaves them out, and giving one is a usage error.
func Ignores(c *cobra.Command, flags ...string) {
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[annIgnores] = strings.Join(flags, ",")
}

// ignored reports whether c (or a command above it) ignores flag name.
func ignored(c *cobra.Command, name string) bool {
	for p := c; p != nil; p = p.Parent() {
		if slices.Contains(strings.Split(p.Annotations[annIgnores], ","), name) {
			return true
		}
	}
	return false
}

// Args checks a command's positional arguments against their names as
// its usage line writes them: "KEY", and "[PREFIX]" for an optional one.
func Args(names ...string) cobra.PositionalArgs {
	required := 0
	for _, n := range names {
		if !strings.HasPrefix(n, "[") {
			required++
		}
	}
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) < required:
			return Usagef("missing %s", strings.Join(names[len(args):required], " "))
		case len(args) > len(names) && len(names) == 0:
			return Usagef("unexpected argument %q (%s takes no arguments)", args[0], c.Name())
		case len(args) > len(names):
			return Usagef("unexpected argument %q (%s takes %s)", args[len(names)], c.Name(), strings.Join(names, " "))
		}
		return nil
	}
}

// Setup gives every command of root's tree the shared behaviour: help,
// usage, flag errors in the user's terms, argument checks (a command
// without Args takes no arguments), examples on cobra's own help and
// completion commands, flags listed in the order they were defined. The
// tree reads and writes the streams given. Call it once the tree is
// built.
func Setup(root *cobra.Command, stdin io.Reader, stdout, stderr io.Writer) {
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetFlagErrorFunc(flagError)
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { fmt.Fprint(c.OutOrStdout(), Help(c)) })
	root.SetUsageFunc(func(c *cobra.Command) error {
		_, err := fmt.Fprint(c.OutOrStderr(), Usage(c))
		return err
	})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	describeBuiltins(root)
	Walk(root, func(c *cobra.Command) {
		c.DisableFlagsInUseLine = true
		c.DisableAutoGenTag = true
		c.Flags().SortFlags = false
		c.PersistentFlags().SortFlags = false
		c.InheritedFlags().SortFlags = false
		c.InitDefaultHelpFlag()
		switch {
		case c.Args == nil && c.HasSubCommands():
			// A runnable root with subcommands (outpost-agent): cobra
			// refuses unknown words itself; keep it a usage error.
			c.Args = asUsage(cobra.NoArgs)
		case c.Args == nil:
			c.Args = asUsage(Args())
		default:
			c.Args = asUsage(c.Args)
		}
	})
}

// Walk calls fn on c and every command below it.
func Walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		Walk(sub, fn)
	}
}

// asUsage makes a cobra argument check's error a usage error. Flags the
// command ignores are refused first: a flag is a mistake before a missing
// argument is.
func asUsage(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := refuseIgnored(c); err != nil {
			return err
		}
		err := check(c, args)
		var ue *UsageError
		if err != nil && !errors.As(err, &ue) {
			return &UsageError{Msg: err.Error()}
		}
		return err
	}
}

// refuseIgnored refuses an inherited flag that c ignores.
func refuseIgnored(c *cobra.Command) error {
	var bad string
	c.Flags().Visit(func(f *pflag.Flag) {
		if bad == "" && ignored(c, f.Name) {
			bad = f.Name
		}
	})
	if bad != "" {
		return doesNotApply(c, bad)
	}
	return nil
}

func doesNotApply(c *cobra.Command, name string) error {
	path := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
	return Usagef("--%s does not apply to this command (%s takes %s)", name, path, strings.Join(FlagNames(c), ", "))
}

// FlagNames lists the flags c takes, "--name" each: its own, then the
// global ones it uses (never --help or --version).
func FlagNames(c *cobra.Command) []string {
	var out []string
	add := func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" || f.Name == "version" || ignored(c, f.Name) {
			return
		}
		out = append(out, "--"+f.Name)
	}
	c.LocalFlags().VisitAll(add)
	c.InheritedFlags().VisitAll(add)
	return out
}

// definedAnywhere reports whether some command of c's tree defines flag
// name.
func definedAnywhere(c *cobra.Command, name string) bool {
	found := false
	Walk(c.Root(), func(x *cobra.Command) {
		if x.Flags().Lookup(name) != nil || x.PersistentFlags().Lookup(name) != nil {
			found = true
		}
	})
	return found
}

// flagError words pflag's parse errors for the user.
func flagError(c *cobra.Command, err error) error {
	var (
		ne *pflag.NotExistError
		iv *pflag.InvalidValueError
		vr *pflag.ValueRequiredError
	)
	switch {
	case errors.As(err, &ne) && len(ne.GetSpecifiedShortnames()) > 1:
		// "-tenant": Go's flag package took one dash; pflag reads the
		// letters as short flags.
		long := strings.SplitN(ne.GetSpecifiedShortnames(), "=", 2)[0]
		if c.Flags().Lookup(long) != nil || definedAnywhere(c, long) {
			return Usagef("-%s: write --%s, with two dashes", long, long)
		}
		return Usagef("unknown flag -%s", ne.GetSpecifiedShortnames())
	case errors.As(err, &ne):
		name := ne.GetSpecifiedName()
		if ne.GetSpecifiedShortnames() == "" && definedAnywhere(c, name) {
			return doesNotApply(c, name)
		}
		var names []string
		for _, f := range FlagNames(c) {
			names = append(names, strings.TrimPrefix(f, "--"))
		}
		dash := "--"
		if ne.GetSpecifiedShortnames() != "" {
			dash = "-"
		}
		return Usagef("unknown flag %s%s%s", dash, name, didYouMean(closest(name, names), "--"))
	case errors.As(err, &iv):
		f := iv.GetFlag()
		return Usagef("invalid value %q for --%s: %s", iv.GetValue(), f.Name, wants(f.Value.Type()))
	case errors.As(err, &vr):
		return Usagef("--%s needs a value", vr.GetSpecifiedName())
	}
	return &UsageError{Msg: err.Error()}
}

// wants says what a flag of a pflag value type takes.
func wants(typ string) string {
	switch typ {
	case "duration":
		return "use a duration such as 10s, 1m30s or 2h"
	case "bool":
		return "use true or false"
	case "uint", "uint8", "uint16", "uint32", "uint64":
		return "use a whole number, 0 or more"
	case "int", "int8", "int16", "int32", "int64":
		return "use a whole number"
	case "float32", "float64":
		return "use a number"
	}
	return "not a valid " + typ
}

func didYouMean(s []string, prefix string) string {
	if len(s) == 0 {
		return ""
	}
	for i := range s {
		s[i] = prefix + s[i]
	}
	return "; did you mean " + strings.Join(s, " or ") + "?"
}

// closest returns the candidates nearest to typed, within two edits.
func closest(typed string, candidates []string) []string {
	var out []string
	best := 3
	for _, c := range candidates {
		switch d := editdist.Levenshtein(typed, c); {
		case d < best:
			out, best = []string{c}, d
		case d == best:
			out = append(out, c)
		}
	}
	return out
}

// Execute runs root (Setup done) with args. A usage error is printed to
// the tree's standard error as one line naming the mistake, then the
// usage of the command it concerns; other errors are returned for the
// caller to print. errors.Is(err, ErrUsage) tells the usage errors (exit
// 2) from failures (exit 1).
func Execute(ctx context.Context, root *cobra.Command, args []string) error {
	root.SetArgs(append([]string{}, args...))
	cmd, err := root.ExecuteContextC(ctx)
	var ue *UsageError
	if errors.As(err, &ue) {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(root.ErrOrStderr(), "%s: %s\n", cmd.CommandPath(), ue.Msg)
		fmt.Fprint(root.ErrOrStderr(), Usage(cmd))
	}
	return err
}
