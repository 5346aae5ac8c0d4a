package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// fedOpts are the federation commands' flags. The peer's address is
// --peer-addr, not --addr: --addr is every command's node API address.
type fedOpts struct {
	peerAddr, ca, secretFile, peer, linkID string
}

func (o *fedOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.peerAddr, "peer-addr", "", "HOST:PORT of the peer region's federation endpoint, or its nodes' comma-separated (peers add)")
	fs.StringVar(&o.ca, "ca", "", "the peer region's CA certificate (PEM file), pinned (peers add)")
	fs.StringVar(&o.secretFile, "secret-file", "", "file holding the secret shared with the peer, at least 32 bytes; - for stdin (peers add)")
	fs.StringVar(&o.peer, "peer", "", "the peer region (links create/remove)")
	fs.StringVar(&o.linkID, "link-id", "", "the link id the peer region's links create printed (links create, second side)")
}

// isFederationCommand reports whether runFederation owns cmd.
func isFederationCommand(cmd string) bool {
	word, _, _ := strings.Cut(cmd, " ")
	return word == "peers" || word == "links" || word == "global"
}

func runFederation(ctx context.Context, c *client, g *globals, o fedOpts, tenant string, l cmdline) error {
	form := commands[l.name].form
	switch l.name {
	case "peers add":
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		if o.peerAddr == "" || o.ca == "" || o.secretFile == "" {
			return l.usage(form, "--peer-addr, --ca and --secret-file are required")
		}
		caPEM, err := os.ReadFile(o.ca)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		secret, err := readSecret(o.secretFile, l.stdin)
		if err != nil {
			return err
		}
		var p api.Peer
		if err := c.send(ctx, "POST", "/api/v1/peers", api.PeerCreate{Name: l.pos[0], Addr: o.peerAddr, CAPEM: string(caPEM), Secret: secret}, &p); err != nil {
			return err
		}
		if g.json {
			return printJSON(l.stdout, p)
		}
		fmt.Fprintf(l.stdout, "added peer %s at %s (CA %s, expires %s); configure this region on %s the same way, with the same secret\n",
			p.Name, p.Addr, p.CAPin, stamp(p.CAExpires), p.Name)
		return nil
	case "peers list":
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		var ps []api.Peer
		if err := c.do(ctx, "GET", "/api/v1/peers", nil, &ps); err != nil {
			return err
		}
		if g.json {
			return printJSON(l.stdout, ps)
		}
		tw := newTable(l.stdout, "PEER\tADDRESS\tSTATE\tRTT\tLAST OK\tDATA AGE\tCERT EXPIRES\tLINKS\tLAST ERROR")
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
			fmt.Fprintf(l.stdout, "(as node %s sees them)\n", ps[0].State.Node)
		}
		return nil
	case "peers remove":
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		if err := c.do(ctx, "DELETE", "/api/v1/peers/"+url.PathEscape(l.pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(l.stdout, "removed peer %s and its links\n", l.pos[0])
		return nil
	case "links create":
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		if tenant == "" || o.peer == "" {
			return l.usage(form, "--tenant and --peer are required")
		}
		var lk api.Link
		if err := c.send(ctx, "POST", tenantPath(tenant)+"/links", api.LinkCreate{Peer: o.peer, LinkID: o.linkID}, &lk); err != nil {
			return err
		}
		if g.json {
			return printJSON(l.stdout, lk)
		}
		fmt.Fprintf(l.stdout, "%s\n", lk.ID)
		if o.linkID == "" {
			fmt.Fprintf(l.stderr, "linked tenant %s to peer %s. On %s, a tenant Admin runs:\n  outpostctl links create --tenant THEIR_TENANT --peer THIS_REGION --link-id %s\n", tenant, o.peer, o.peer, lk.ID)
		}
		return nil
	case "links list":
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		if tenant == "" {
			return l.usage(form, "--tenant is required")
		}
		var ls []api.Link
		if err := c.do(ctx, "GET", tenantPath(tenant)+"/links", nil, &ls); err != nil {
			return err
		}
		if g.json {
			return printJSON(l.stdout, ls)
		}
		tw := newTable(l.stdout, "LINK\tPEER\tCREATED\tBY")
		for _, lk := range ls {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", lk.ID, lk.Peer, stamp(lk.Created), lk.CreatedBy)
		}
		return tw.Flush()
	case "links remove":
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		if tenant == "" || o.peer == "" {
			return l.usage(form, "--tenant and --peer are required")
		}
		if err := c.do(ctx, "DELETE", tenantPath(tenant)+"/links/"+url.PathEscape(o.peer)+"/"+url.PathEscape(l.pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(l.stdout, "removed link %s to %s\n", l.pos[0], o.peer)
		return nil
	case "global health":
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		var h api.GlobalHealth
		if err := c.do(ctx, "GET", "/api/v1/global/health", nil, &h); err != nil {
			return err
		}
		if g.json {
			return printJSON(l.stdout, h)
		}
		tw := newTable(l.stdout, "SOURCE\tREGION\tLEADER\tNODES\tAGENTS\tLEASE\tDATA AGE")
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
		return printPeers(l.stdout, h.Global)
	case "global agents":
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		if tenant == "" {
			return l.usage(form, "--tenant is required")
		}
		var a api.GlobalAgents
		if err := c.do(ctx, "GET", tenantPath(tenant)+"/global/agents", nil, &a); err != nil {
			return err
		}
		if g.json {
			return printJSON(l.stdout, a)
		}
		tw := newTable(l.stdout, "SOURCE\tREGION\tID\tHOST\tNODE\tMODE\tHEALTH\tVERSION")
		for _, r := range a.Agents {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Source, r.Region, r.ID, r.Host, dash(r.Node), r.Mode, dash(r.Health), dash(r.Version))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return printPeers(l.stdout, a.Global)
	case "global query":
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		if tenant == "" {
			return l.usage(form, "--tenant is required")
		}
		var q api.GlobalQuery
		if err := c.do(ctx, "GET", tenantPath(tenant)+"/global/query?query="+url.QueryEscape(l.pos[0]), nil, &q); err != nil {
			return err
		}
		if g.json {
			return printJSON(l.stdout, q)
		}
		for _, s := range q.Samples {
			fmt.Fprintf(l.stdout, "%s => %s\n", labelText(s.Labels), s.V)
		}
		for _, w := range q.Warnings {
			fmt.Fprintf(l.stdout, "warning: %s\n", w)
		}
		return printPeers(l.stdout, q.Global)
	}
	return usageErr(l.stderr, form)
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
