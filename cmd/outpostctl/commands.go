package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/cli"
)

func statusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "The region: nodes, Raft state, leader, dispatch lease, versions",
		Long: `Print the region as the node at --addr sees it (GET /api/v1/region): its
leader, the dispatch lease, and one row per node with its Raft state,
suffrage, gossip status, last contact, applied index, agents, version and
addresses. A node that cannot be asked shows "unreachable".

outpostctl remembers the nodes' API URLs it saw here, so that when the node
at --addr does not answer, the error names the others.`,
		Example: "  outpostctl status\n  outpostctl status --addr http://10.0.1.12:7070 --json",
		RunE:    func(c *cobra.Command, _ []string) error { return status(c.Context(), a.client(), &a.g, a.stdout) },
	}
}

func membersCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "Gossip members: status, region, addresses",
		Long: `Print every gossip member the node at --addr knows (GET /api/v1/members):
its status, when that last changed, its region, whether it is in a Raft
configuration, and its gossip, Raft and API addresses.`,
		Example: "  outpostctl members\n  outpostctl members --json",
		RunE:    func(c *cobra.Command, _ []string) error { return members(c.Context(), a.client(), &a.g, a.stdout) },
	}
}

func kvCommand(a *app) *cobra.Command {
	kv := cli.Group("kv <command>", "Read and write the region's key/value store, or a tenant's",
		"  outpostctl kv put app/config '{\"replicas\": 3}'\n  outpostctl kv get app/config --tenant acme")
	kv.Long = `The kv commands read and write the region's infrastructure store
(/api/v1/kv, region admins). With --tenant T they act on tenant T's keys
instead (/api/v1/tenants/T/kv: a Viewer reads, an Operator writes). Keys
may contain "/".`
	var tenant string
	var consistent bool
	tenantFlag := func(c *cobra.Command) {
		c.Flags().StringVar(&tenant, "tenant", "", "act on tenant `T`'s keys instead of the region's")
	}
	consistentFlag := func(c *cobra.Command) {
		c.Flags().BoolVar(&consistent, "consistent", false, "a linearizable read, through the leader")
	}
	get := &cobra.Command{
		Use:   "get KEY [--tenant T] [--consistent]",
		Short: "Print a key's value",
		Long: `Write the value's bytes to standard output exactly, with no newline added.
With --json print {"key", "value"} (or "value_base64" when the value is not
UTF-8). A missing key is exit 1.`,
		Example: "  outpostctl kv get app/config\n  outpostctl kv get app/config --tenant acme --consistent > config.json",
		Args:    cli.Args("KEY"),
		RunE: func(c *cobra.Command, args []string) error {
			return kvGet(c.Context(), a.client(), &a.g, tenant, args[0], consistent, a.stdout)
		},
	}
	tenantFlag(get)
	consistentFlag(get)
	put := &cobra.Command{
		Use:   "put KEY VALUE [--tenant T]",
		Short: `Write a key ("-" as VALUE reads standard input)`,
		Long: `Write the key and print "committed at index N" (--json: {"index": N}).
VALUE "-" reads the value from standard input. The API refuses values over
1 MiB. A value that begins with "-" follows "--".`,
		Example: "  outpostctl kv put app/replicas 3\n  outpostctl kv put app/config - --tenant acme < config.json\n  outpostctl kv put offset -- -5",
		Args:    cli.Args("KEY", "VALUE"),
		RunE: func(c *cobra.Command, args []string) error {
			return kvPut(c.Context(), a.client(), &a.g, tenant, args[0], args[1], a.stdin, a.stdout)
		},
	}
	tenantFlag(put)
	del := &cobra.Command{
		Use:     "delete KEY [--tenant T]",
		Short:   "Delete a key",
		Long:    `Delete the key and print "deleted at index N". Deleting a missing key succeeds.`,
		Example: "  outpostctl kv delete app/replicas\n  outpostctl kv delete app/config --tenant acme",
		Args:    cli.Args("KEY"),
		RunE: func(c *cobra.Command, args []string) error {
			return kvDelete(c.Context(), a.client(), &a.g, tenant, args[0], a.stdout)
		},
	}
	tenantFlag(del)
	var all bool
	list := &cobra.Command{
		Use:   "list [PREFIX] [--tenant T] [--consistent] [--all]",
		Short: "List keys, with their sizes",
		Long: `Print one line per key, "KEY<TAB>N bytes", in key order; at most 1000 keys.
PREFIX keeps the keys that begin with it. The region's keys under drill/,
which failover drills write and keep for their reports, are left out
unless --all is given or PREFIX is inside drill/.`,
		Example: "  outpostctl kv list\n  outpostctl kv list app/ --tenant acme --json\n  outpostctl kv list drill/",
		Args:    cli.Args("[PREFIX]"),
		RunE: func(c *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return kvList(c.Context(), a.client(), &a.g, tenant, prefix, consistent, all, a.stdout)
		},
	}
	tenantFlag(list)
	consistentFlag(list)
	list.Flags().BoolVar(&all, "all", false, "also list the failover drills' keys (drill/)")
	kv.AddCommand(get, put, del, list)
	return kv
}

func devCommand(a *app) *cobra.Command {
	dev := cli.Group("dev <command>", "Stop and start nodes of an `outpost dev` region",
		"  outpostctl dev stop n1\n  outpostctl dev start n1")
	dev.Long = `Kill or restart a node of a region run by ` + "`outpost dev`" + `. The dev-only routes
exist on every node of a dev region; against a node that is not in dev mode
the command fails (exit 1).`
	for _, action := range []string{"stop", "start"} {
		short := map[string]string{"stop": "Kill a node of the dev region", "start": "Start a stopped node of the dev region"}[action]
		dev.AddCommand(&cobra.Command{
			Use:   action + " NODE",
			Short: short,
			Long: short + map[string]string{
				"stop":  `; print "node NODE stopped" once its API no longer answers. The node is killed, as a crash would; stopping a one-node region's node stops the region.`,
				"start": `; print "node NODE started". A node still stopping is waited for.`,
			}[action],
			Example: "  outpostctl dev " + action + " n1\n  outpostctl dev " + action + " n2 --addr http://127.0.0.1:7071",
			Args:    cli.Args("NODE"),
			RunE: func(c *cobra.Command, args []string) error {
				return devAction(c.Context(), a.client(), &a.g, action, args[0], a.stdout)
			},
		})
	}
	return dev
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func status(ctx context.Context, c *client, g *globals, w io.Writer) error {
	var r api.Region
	if err := c.do(ctx, "GET", "/api/v1/region", nil, &r); err != nil {
		return err
	}
	rememberRegion(c.Addr, r)
	if g.json {
		return printJSON(w, r)
	}
	leader := r.Leader
	if leader == "" {
		leader = "(none: election under way or no quorum)"
	}
	fmt.Fprintf(w, "Region: %s   Leader: %s   (answered by %s)\n", r.Region, leader, r.Node)
	if l := r.Lease; l != nil {
		switch {
		case l.Holder == "" && l.Released:
			fmt.Fprintf(w, "Lease:  nobody holds it (token %d released for a handoff)\n", l.Token)
		case l.Holder == "":
			fmt.Fprintf(w, "Lease:  nobody holds it (token %d; a failover is under way)\n", l.Token)
		default:
			fmt.Fprintf(w, "Lease:  holder %s, token %d, %dms left (duration %dms, drift margin %dms)\n",
				l.Holder, l.Token, l.ExpiresInMs, l.DurationMs, l.DriftMarginMs)
		}
		if l.StaleRefused > 0 {
			fmt.Fprintf(w, "        %d stale dispatch(es) refused by the fencing so far\n", l.StaleRefused)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRAFT STATE\tSUFFRAGE\tGOSSIP\tLAST CONTACT\tAPPLIED\tAGENTS\tVERSION\tAPI\tRAFT ADDRESS")
	for _, n := range r.Nodes {
		lc := "-"
		switch {
		case n.RaftState == "leader":
			lc = "(leader)"
		case n.LastContactMs >= 0:
			lc = fmt.Sprintf("%dms", n.LastContactMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", n.ID, n.RaftState, n.Suffrage, n.Gossip, lc, n.AppliedIndex, n.Agents, dash(n.Version), dash(n.APIURL), n.Address)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if vs := versions(r.Nodes); len(vs) > 1 {
		fmt.Fprintf(w, "\nThe nodes run %d different versions (%s): finish the upgrade, or roll back.\n", len(vs), strings.Join(vs, ", "))
	}
	return nil
}

// versions lists the distinct versions the nodes reported.
func versions(ns []api.Node) []string {
	var vs []string
	for _, n := range ns {
		if n.Version != "" && !slices.Contains(vs, n.Version) {
			vs = append(vs, n.Version)
		}
	}
	slices.Sort(vs)
	return vs
}

func members(ctx context.Context, c *client, g *globals, w io.Writer) error {
	var ms []api.Member
	if err := c.do(ctx, "GET", "/api/v1/members", nil, &ms); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, ms)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tSINCE\tREGION\tIN REGION\tGOSSIP ADDRESS\tRAFT ADDRESS\tAPI")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\n", m.ID, m.Status, m.Since.Format("15:04:05"), m.Region, m.InRegion, m.GossipAddr, m.RaftAddr, dash(m.APIURL))
	}
	return tw.Flush()
}

// kvValue is `outpostctl kv get --json`: the value as text when it is
// valid UTF-8, else base64.
type kvValue struct {
	Key         string `json:"key"`
	Value       string `json:"value,omitempty"`
	ValueBase64 []byte `json:"value_base64,omitempty"`
}

func kvGet(ctx context.Context, c *client, g *globals, tenant, key string, consistent bool, w io.Writer) error {
	path := kvPath(tenant) + "/" + escapeKey(key)
	if consistent {
		path += "?consistent=true"
	}
	var raw []byte
	if err := c.do(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	if g.json {
		v := kvValue{Key: key}
		if utf8.Valid(raw) {
			v.Value = string(raw)
		} else {
			v.ValueBase64 = raw
		}
		return printJSON(w, v)
	}
	_, err := w.Write(raw)
	return err
}

func kvPut(ctx context.Context, c *client, g *globals, tenant, key, value string, stdin io.Reader, w io.Writer) error {
	body := []byte(value)
	if value == "-" {
		var err error
		if body, err = io.ReadAll(stdin); err != nil {
			return err
		}
	}
	var res api.WriteResult
	if err := c.do(ctx, "PUT", kvPath(tenant)+"/"+escapeKey(key), body, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	fmt.Fprintf(w, "committed at index %d\n", res.Index)
	return nil
}

func kvDelete(ctx context.Context, c *client, g *globals, tenant, key string, w io.Writer) error {
	var res api.WriteResult
	if err := c.do(ctx, "DELETE", kvPath(tenant)+"/"+escapeKey(key), nil, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	fmt.Fprintf(w, "deleted at index %d\n", res.Index)
	return nil
}

func kvList(ctx context.Context, c *client, g *globals, tenant, prefix string, consistent, all bool, w io.Writer) error {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if consistent {
		q.Set("consistent", "true")
	}
	if all {
		q.Set("all", "true")
	}
	var es []api.KVEntry
	if err := c.do(ctx, "GET", kvPath(tenant)+"?"+q.Encode(), nil, &es); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, es)
	}
	for _, e := range es {
		fmt.Fprintf(w, "%s\t%d bytes\n", e.Key, e.Size)
	}
	return nil
}

// kvPath is the key/value collection of tenant T (--tenant), or the
// region's infrastructure store without one.
func kvPath(tenant string) string {
	if tenant == "" {
		return "/api/v1/kv"
	}
	return "/api/v1/tenants/" + url.PathEscape(tenant) + "/kv"
}

func devAction(ctx context.Context, c *client, g *globals, action, id string, w io.Writer) error {
	// Stopping: where the node answers, to see it stop, and whether it is
	// the region's only one.
	var before api.Region
	if action == "stop" {
		if err := c.do(ctx, "GET", "/api/v1/region", nil, &before); err != nil {
			return err
		}
	}
	var res map[string]string
	if err := c.do(ctx, "POST", "/api/v1/dev/nodes/"+url.PathEscape(id)+"/"+action, nil, &res); err != nil {
		return err
	}
	if action == "stop" {
		for _, n := range before.Nodes {
			if n.ID == id && n.APIURL != "" {
				if err := waitDown(ctx, n.APIURL, 15*time.Second); err != nil {
					return fmt.Errorf("node %s was told to stop, but %w", id, err)
				}
			}
		}
	}
	if g.json {
		return printJSON(w, res)
	}
	fmt.Fprintf(w, "node %s %s\n", id, res["state"])
	if action == "stop" && len(before.Nodes) == 1 {
		fmt.Fprintf(w, "%s was the region's only node: the region is down, and no node is left to answer `outpostctl dev start`; stop outpost dev (Ctrl-C) and run it again\n", id)
	}
	return nil
}

// waitDown waits until nothing answers at the API URL u: `dev stop`
// returns once the node has stopped, so a `dev start` after it finds
// the ports free.
func waitDown(ctx context.Context, u string, within time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(u, "/")+"/api/v1/health", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil // nothing answers: stopped
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("its API at %s still answers after %v", u, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
