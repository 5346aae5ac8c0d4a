package main

import (
	"context"
	"fmt"
	"io"

	"github.com/outpost-mesh/outpost/api"
)

// keys shows the master key status (GET) or rotates the stored secrets
// onto the current key (POST), which answers with the status after.
func keys(ctx context.Context, c *client, g *globals, method, path string, w io.Writer) error {
	var st api.KeyStatus
	if err := c.do(ctx, method, path, nil, &st); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, st)
	}
	fmt.Fprintf(w, "Node:              %s\n", st.Node)
	fmt.Fprintf(w, "Current key:       %s\n", st.KeyID)
	fmt.Fprintf(w, "Previous key:      %s\n", dash(st.PreviousKeyID))
	fmt.Fprintf(w, "Stored secrets:    %d\n", st.Secrets)
	fmt.Fprintf(w, "On previous key:   %d\n", st.OnPrevious)
	if method == "POST" {
		fmt.Fprintf(w, "Re-wrapped now:    %d\n", st.Rewrapped)
	}
	switch {
	case st.PreviousKeyID == "":
		// No rotation configured: nothing to finish.
	case st.OnPrevious == 0:
		fmt.Fprintln(w, "\nrotation complete on the stored secrets; once every node has restarted with the new key, remove previous_master_key_file from each node's keys config (or unset OUTPOST_PREVIOUS_MASTER_KEY)")
	default:
		fmt.Fprintf(w, "\n%d stored secrets are still wrapped by the previous key; run `outpostctl keys rotate`\n", st.OnPrevious)
	}
	return nil
}
