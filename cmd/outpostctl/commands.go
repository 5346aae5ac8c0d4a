package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/outpost-mesh/outpost/api"
)

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
	fmt.Fprintln(tw, "NODE\tRAFT STATE\tSUFFRAGE\tGOSSIP\tLAST CONTACT\tAPPLIED\tAGENTS\tAPI\tRAFT ADDRESS")
	for _, n := range r.Nodes {
		lc := "-"
		switch {
		case n.RaftState == "leader":
			lc = "(leader)"
		case n.LastContactMs >= 0:
			lc = fmt.Sprintf("%dms", n.LastContactMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", n.ID, n.RaftState, n.Suffrage, n.Gossip, lc, n.AppliedIndex, n.Agents, dash(n.APIURL), n.Address)
	}
	return tw.Flush()
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

func kvList(ctx context.Context, c *client, g *globals, tenant, prefix string, consistent bool, w io.Writer) error {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if consistent {
		q.Set("consistent", "true")
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
	var res map[string]string
	if err := c.do(ctx, "POST", "/api/v1/dev/nodes/"+url.PathEscape(id)+"/"+action, nil, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	fmt.Fprintf(w, "node %s %s\n", id, res["state"])
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
