package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/internal/buildinfo"
)

// AddVersion adds `version` and `--version` to root. Both print the
// build (buildinfo.Info.Text); `version --json` prints it as JSON. extra,
// if not empty, is printed after it (outpost-agent: the version it
// reports to its node).
func AddVersion(root *cobra.Command, extra string) *cobra.Command {
	name := root.Name()
	text := func() string { return buildinfo.Read().Text(name) + extra }
	root.Version = buildinfo.Read().Version
	root.Flags().Bool("version", false, "print the version and exit")
	v := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build time and Go version",
		Long: fmt.Sprintf(`Print %s's build: the module version ("(devel)" for a build of a
checkout), the VCS commit, when it was built and with which Go. A field the
build did not record says "unknown"; `+"`make build`"+` records the commit
and the time. --version prints the same.`, name),
		Example: fmt.Sprintf("  %[1]s version\n  %[1]s version --json", name),
		RunE: func(c *cobra.Command, _ []string) error {
			if asJSON, _ := c.Flags().GetBool("json"); asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(buildinfo.Read())
			}
			_, err := fmt.Fprint(c.OutOrStdout(), text())
			return err
		},
	}
	if root.PersistentFlags().Lookup("json") == nil {
		v.Flags().Bool("json", false, "print JSON")
	}
	root.AddCommand(v)
	// cobra prints Version through this template for --version: give it
	// the whole text, read when it is printed.
	root.SetVersionTemplate(`{{with .Annotations}}{{index . "outpost.version"}}{{end}}`)
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations["outpost.version"] = text()
	return v
}
