package clidoc

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/internal/cli"
)

func tree() *cobra.Command {
	root := cli.Group("tool <command>", "a tool", "  tool kv get k")
	root.PersistentFlags().String("addr", "", "")
	kv := cli.Group("kv <command>", "kv", "  tool kv get k")
	get := &cobra.Command{Use: "get KEY", Short: "get", Example: "  tool kv get k", Args: cli.Args("KEY"), RunE: func(*cobra.Command, []string) error { return nil }}
	get.Flags().String("tenant", "", "")
	kv.AddCommand(get)
	root.AddCommand(kv)
	cli.Setup(root, strings.NewReader(""), io.Discard, io.Discard)
	return root
}

// TestCheckLines: command lines in code are checked, prose and marked
// mistakes are not.
func TestCheckLines(t *testing.T) {
	text := strings.Join([]string{
		"Run `tool kv get k --tenant acme` or `tool kv get k --addr x`.", // 1: fine
		"```sh",                                         // 2
		"$ tool kv get k --tenat acme | jq .",           // 3: a bad flag
		"X=1 ./bin/tool kv put k v",                     // 4: no such command
		"eval \"$(tool kv get k --bogus)\"",             // 5: a bad flag
		"usage: tool kv get KEY [--tenant T]",           // 6: output, not a command
		"```",                                           // 7
		"Stop the other tool process first.",            // 8: prose
		"`stop the other tool process` and `tool kv|x`", // 9: a command that is not one
		MistakeMarker,                                   // 10
		"```",                                           // 11
		"tool kv get k --tenat acme",                    // 12: shown on purpose
		"tool kv get: unknown flag --tenat",             // 13
		"```",                                           // 14
	}, "\n")
	problems, checked := CheckLines(tree(), text)
	want := []string{"3: ", "4: ", "5: ", "9: "}
	if len(problems) != len(want) {
		t.Fatalf("problems %q, want lines %v", problems, want)
	}
	for i, p := range problems {
		if !strings.HasPrefix(p, want[i]) {
			t.Errorf("problem %q, want line %s", p, want[i])
		}
	}
	if checked != 6 {
		t.Errorf("checked %d command lines, want 6", checked)
	}
}
