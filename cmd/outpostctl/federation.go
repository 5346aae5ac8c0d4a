package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/cli"
)

// The peer's address is --peer-addr, not --addr: --addr is every
// command's node API address.

func peersCommand(a *app) *cobra.Command {
	grp := cli.Group("peers <command>", "Federated regions: add, list, remove (region admins)",
		"  outpostctl peers add eu-west --peer-addr 10.2.0.11:7304 --ca eu-west-ca.crt --secret-file fed.secret\n  outpostctl peers list")
	grp.Long = `Regions federate read-only, as peers: there is no primary region, and a
region that is down only leaves its own rows out of the others' global
views. Both regions add each other, with the same secret; a peer's name is
its region's name.`
	var peerAddr, ca, secretFile string
	add := &cobra.Command{
		Use:   "add NAME --peer-addr HOST:PORT[,HOST:PORT…] --ca PEER-CA.pem --secret-file FILE|-",
		Short: "Federate with region NAME (its CA pinned, a shared secret)",
		Long: `Federate with region NAME: --peer-addr is its federation endpoint (a
node's federation.bind or advertise), or up to 8 of its nodes',
comma-separated; --ca its region CA, pinned; --secret-file the secret shared
with it (32 bytes or more, e.g. ` + "`openssl rand -hex 32 > fed.secret`" + `), stored
sealed by the master key. The peer adds this region the same way.`,
		Example: "  outpostctl peers add eu-west --peer-addr 10.2.0.11:7304 --ca eu-west-ca.crt --secret-file fed.secret\n  outpostctl peers add eu-west --peer-addr 10.2.0.11:7304,10.2.0.12:7304 --ca eu-west-ca.crt --secret-file - < fed.secret",
		Args:    cli.Args("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if peerAddr == "" || ca == "" || secretFile == "" {
				return cli.Usagef("--peer-addr, --ca and --secret-file are required")
			}
			caPEM, err := os.ReadFile(ca)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			secret, err := readSecret(secretFile, a.stdin)
			if err != nil {
				return err
			}
			var p api.Peer
			if err := a.client().send(c.Context(), "POST", "/api/v1/peers", api.PeerCreate{Name: args[0], Addr: peerAddr, CAPEM: string(caPEM), Secret: secret}, &p); err != nil {
				return err
			}
			if a.g.json {
				return printJSON(a.stdout, p)
			}
			fmt.Fprintf(a.stdout, "added peer %s at %s (CA %s, expires %s); configure this region on %s the same way, with the same secret\n",
				p.Name, p.Addr, p.CAPin, stamp(p.CAExpires), p.Name)
			return nil
		},
	}
	add.Flags().StringVar(&peerAddr, "peer-addr", "", "`HOST:PORT` of the peer region's federation endpoint, or its nodes', comma-separated")
	add.Flags().StringVar(&ca, "ca", "", "the peer region's CA certificate (PEM `FILE`), pinned")
	add.Flags().StringVar(&secretFile, "secret-file", "", "`FILE` holding the secret shared with the peer, at least 32 bytes; - for standard input")
	list := &cobra.Command{
		Use:   "list",
		Short: "Peers: state, RTT, last success, data age, cert expiry",
		Long: `Each peer as the answering node sees it: its state (unknown before the
first call, then ok, stale, timeout, refused, malformed or error), RTT, last
success, data age, the sooner of its certificate's and its pinned CA's
expiry, links, last error.`,
		Example: "  outpostctl peers list\n  outpostctl peers list --json",
		RunE:    func(c *cobra.Command, _ []string) error { return peersList(c.Context(), a.client(), &a.g, a.stdout) },
	}
	remove := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Stop federating with NAME (its links go too)",
		Example: "  outpostctl peers remove eu-west",
		Args:    cli.Args("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := a.client().do(c.Context(), "DELETE", "/api/v1/peers/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed peer %s and its links\n", args[0])
			return nil
		},
	}
	grp.AddCommand(add, list, remove)
	return grp
}

func peersList(ctx context.Context, c *client, g *globals, w io.Writer) error {
	var ps []api.Peer
	if err := c.do(ctx, "GET", "/api/v1/peers", nil, &ps); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, ps)
	}
	tw := newTable(w, "PEER\tADDRESS\tSTATE\tRTT\tLAST OK\tDATA AGE\tCERT EXPIRES\tLINKS\tLAST ERROR")
	now := time.Now()
	for _, p := range ps {
		s := p.State
		rtt, age, lastOK := "-", "-", "never"
		if !s.Checked.IsZero() {
			rtt = fmt.Sprintf("%.1fms", s.RTTMs)
		}
		if !s.LastOK.IsZero() {
			lastOK = now.Sub(s.LastOK).Round(time.Second).String() + " ago"
			age = (time.Duration(s.DataAgeMs) * time.Millisecond).String()
		}
		exp := p.CAExpires
		if !s.CertExpires.IsZero() && s.CertExpires.Before(exp) {
			exp = s.CertExpires
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Name, p.Addr, s.State, rtt, lastOK, age, stamp(exp), p.Links, dash(clip(s.LastError, 80)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ps) > 0 {
		fmt.Fprintf(w, "(as node %s sees them)\n", ps[0].State.Node)
	}
	return nil
}

func linksCommand(a *app) *cobra.Command {
	grp := cli.Group("links <command>", "Link a tenant to its counterpart in a peer region (tenant Admins)",
		"  outpostctl links create --tenant acme --peer eu-west\n  outpostctl links list --tenant acme")
	var tenant, peer, linkID string
	create := &cobra.Command{
		Use:   "create --tenant T --peer P [--link-id ID]",
		Short: "Link tenant T to its counterpart on peer P",
		Long: `Link tenant T to its counterpart in peer region P. The first side prints a
new link id; a tenant Admin in P runs the same command with --link-id ID
against P's own tenant. Only the link id crosses the wire.`,
		Example: "  outpostctl links create --tenant acme --peer eu-west\n  outpostctl links create --tenant acme-eu --peer us-east --link-id 4f2a9c1e",
		RunE: func(c *cobra.Command, _ []string) error {
			if tenant == "" || peer == "" {
				return cli.Usagef("--tenant and --peer are required")
			}
			var lk api.Link
			if err := a.client().send(c.Context(), "POST", tenantPath(tenant)+"/links", api.LinkCreate{Peer: peer, LinkID: linkID}, &lk); err != nil {
				return err
			}
			if a.g.json {
				return printJSON(a.stdout, lk)
			}
			fmt.Fprintf(a.stdout, "%s\n", lk.ID)
			if linkID == "" {
				fmt.Fprintf(a.stderr, "linked tenant %s to peer %s. On %s, a tenant Admin runs:\n  outpostctl links create --tenant THEIR_TENANT --peer THIS_REGION --link-id %s\n", tenant, peer, peer, lk.ID)
			}
			return nil
		},
	}
	withTenant(create, &tenant, "the tenant `T` to link (required)")
	create.Flags().StringVar(&peer, "peer", "", "the peer `REGION` (required)")
	create.Flags().StringVar(&linkID, "link-id", "", "the link `ID` the peer region's links create printed (the second side)")
	list := &cobra.Command{
		Use:     "list --tenant T",
		Short:   "The tenant's links",
		Example: "  outpostctl links list --tenant acme\n  outpostctl links list --tenant acme --json",
		RunE: func(c *cobra.Command, _ []string) error {
			if tenant == "" {
				return cli.Usagef("--tenant is required")
			}
			var ls []api.Link
			if err := a.client().do(c.Context(), "GET", tenantPath(tenant)+"/links", nil, &ls); err != nil {
				return err
			}
			if a.g.json {
				return printJSON(a.stdout, ls)
			}
			tw := newTable(a.stdout, "LINK\tPEER\tCREATED\tBY")
			for _, lk := range ls {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", lk.ID, lk.Peer, stamp(lk.Created), lk.CreatedBy)
			}
			return tw.Flush()
		},
	}
	withTenant(list, &tenant, "the tenant `T` (required)")
	remove := &cobra.Command{
		Use:     "remove ID --tenant T --peer P",
		Short:   "Remove a link",
		Example: "  outpostctl links remove 4f2a9c1e --tenant acme --peer eu-west",
		Args:    cli.Args("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			if tenant == "" || peer == "" {
				return cli.Usagef("--tenant and --peer are required")
			}
			if err := a.client().do(c.Context(), "DELETE", tenantPath(tenant)+"/links/"+url.PathEscape(peer)+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed link %s to %s\n", args[0], peer)
			return nil
		},
	}
	withTenant(remove, &tenant, "the tenant `T` (required)")
	remove.Flags().StringVar(&peer, "peer", "", "the peer `REGION` (required)")
	grp.AddCommand(create, list, remove)
	return grp
}

func globalCommand(a *app) *cobra.Command {
	grp := cli.Group("global <command>", "Views across federated regions: health, agents, queries",
		"  outpostctl global health\n  outpostctl global query 'count by (outpost_peer) (outpost_flow_connections_total)' --tenant acme")
	grp.Long = `Each global view asks this region and its peers and ends with a table of
the peers asked (status, latency, data age, rows, error) and says complete
or PARTIAL; --json gives the same as {"complete", "peers": [...], …}.`
	health := &cobra.Command{
		Use:     "health",
		Short:   "Every region's nodes, leader, lease and agents (region admins)",
		Example: "  outpostctl global health\n  outpostctl global health --json",
		RunE: func(c *cobra.Command, _ []string) error {
			var h api.GlobalHealth
			if err := a.client().do(c.Context(), "GET", "/api/v1/global/health", nil, &h); err != nil {
				return err
			}
			if a.g.json {
				return printJSON(a.stdout, h)
			}
			tw := newTable(a.stdout, "SOURCE\tREGION\tLEADER\tNODES\tAGENTS\tLEASE\tDATA AGE")
			for _, r := range h.Regions {
				agents := 0
				for _, n := range r.Nodes {
					agents += n.Agents
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s (token %d)\t%s\n", r.Source, r.Region, dash(r.Leader), len(r.Nodes), agents, dash(r.Lease.Holder), r.Lease.Token,
					time.Duration(r.DataAgeMs)*time.Millisecond)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return printPeers(a.stdout, h.Global)
		},
	}
	var tenant string
	agents := &cobra.Command{
		Use:     "agents --tenant T",
		Short:   "The tenant's agents here and in its linked peers",
		Example: "  outpostctl global agents --tenant acme\n  outpostctl global agents --tenant acme --json",
		RunE: func(c *cobra.Command, _ []string) error {
			if tenant == "" {
				return cli.Usagef("--tenant is required")
			}
			var ga api.GlobalAgents
			if err := a.client().do(c.Context(), "GET", tenantPath(tenant)+"/global/agents", nil, &ga); err != nil {
				return err
			}
			if a.g.json {
				return printJSON(a.stdout, ga)
			}
			tw := newTable(a.stdout, "SOURCE\tREGION\tID\tHOST\tNODE\tMODE\tHEALTH\tVERSION")
			for _, r := range ga.Agents {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Source, r.Region, r.ID, r.Host, dash(r.Node), r.Mode, dash(r.Health), dash(r.Version))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return printPeers(a.stdout, ga.Global)
		},
	}
	withTenant(agents, &tenant, "the tenant `T` (required)")
	query := &cobra.Command{
		Use:   "query QUERY --tenant T",
		Short: "An instant PromQL query here and in the tenant's linked peers",
		Long: `Run an instant PromQL query over tenant T's metrics here and in each linked
peer; remote samples carry outpost_peer="NAME".`,
		Example: "  outpostctl global query 'sum by (outpost_peer) (rate(outpost_flow_connections_total[5m]))' --tenant acme\n  outpostctl global query 'sum(rate(outpost_flow_connections_total[5m]))' --tenant acme --json",
		Args:    cli.Args("QUERY"),
		RunE: func(c *cobra.Command, args []string) error {
			if tenant == "" {
				return cli.Usagef("--tenant is required")
			}
			var q api.GlobalQuery
			if err := a.client().do(c.Context(), "GET", tenantPath(tenant)+"/global/query?query="+url.QueryEscape(args[0]), nil, &q); err != nil {
				return err
			}
			if a.g.json {
				return printJSON(a.stdout, q)
			}
			for _, s := range q.Samples {
				fmt.Fprintf(a.stdout, "%s => %s\n", labelText(s.Labels), s.V)
			}
			for _, w := range q.Warnings {
				fmt.Fprintf(a.stdout, "warning: %s\n", w)
			}
			return printPeers(a.stdout, q.Global)
		},
	}
	withTenant(query, &tenant, "the tenant `T` whose metrics to query (required)")
	grp.AddCommand(health, agents, query)
	return grp
}

// printPeers prints a global answer's per-peer status and whether it is
// complete.
func printPeers(w io.Writer, g api.Global) error {
	if len(g.Peers) == 0 {
		fmt.Fprintln(w, "\n(no peers asked: this region only)")
		if !g.Complete {
			fmt.Fprintln(w, "PARTIAL: this region's own answer is incomplete (see the warnings above)")
		}
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w, "PEER\tSTATUS\tLATENCY\tDATA AGE\tROWS\tERROR")
	for _, p := range g.Peers {
		fmt.Fprintf(tw, "%s\t%s\t%.1fms\t%s\t%d\t%s\n", p.Peer, p.Status, p.LatencyMs, time.Duration(p.DataAgeMs)*time.Millisecond, p.Rows, dash(clip(p.Error, 100)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if g.Complete {
		fmt.Fprintln(w, "complete: every peer answered")
	} else {
		fmt.Fprintln(w, "PARTIAL: some peers are missing or stale, or this region's own answer is incomplete (see above)")
	}
	return nil
}

func labelText(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, l[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readSecret reads a shared secret from a file (- for stdin), trimmed of
// its final newline.
func readSecret(path string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 8192))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("--secret-file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
