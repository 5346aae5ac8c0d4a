package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// Agent bootstrap tokens and agents. `tokens create|list|revoke` are the
// tenant's bootstrap tokens (API tokens are `tokens api …`).

func runAgents(ctx context.Context, c *client, g *globals, o accountOpts, l cmdline) error {
	w := l.stdout
	switch l.name {
	case "tokens create":
		const form = "tokens create --tenant T [--ttl 15m]"
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		if o.tenant == "" {
			return l.usage(form, "--tenant is required: a bootstrap token enrolls one agent into that tenant")
		}
		if o.ttl != "" {
			if d, err := time.ParseDuration(o.ttl); err != nil || d < time.Minute || d > 24*time.Hour {
				return l.usage(form, "--ttl %q: use a duration from 1m to 24h, such as 15m", o.ttl)
			}
		}
		return bootstrapCreate(ctx, c, g, o.tenant, o.ttl, w, l.stderr)
	case "tokens list":
		if err := l.check("tokens list --tenant T", 0, 0); err != nil {
			return err
		}
		if o.tenant == "" {
			return l.usage("tokens list --tenant T", "--tenant is required")
		}
		return bootstrapList(ctx, c, g, o.tenant, w)
	case "tokens revoke":
		if err := l.check("tokens revoke ID --tenant T", 1, 1); err != nil {
			return err
		}
		if o.tenant == "" {
			return l.usage("tokens revoke ID --tenant T", "--tenant is required")
		}
		return bootstrapRevoke(ctx, c, g, o.tenant, l.pos[0], w)
	case "agents list":
		if err := l.check("agents list [--tenant T]", 0, 0); err != nil {
			return err
		}
		return agentsList(ctx, c, g, o.tenant, w)
	case "agents revoke":
		if err := l.check("agents revoke ID [--tenant T]", 1, 1); err != nil {
			return err
		}
		return agentRevoke(ctx, c, g, o.tenant, l.pos[0], w)
	case "agents clear-flags":
		if err := l.check("agents clear-flags ID [--tenant T]", 1, 1); err != nil {
			return err
		}
		return agentClearFlags(ctx, c, g, o.tenant, l.pos[0], w)
	}
	return fmt.Errorf("outpostctl: unknown command %q", l.name)
}

func isAgentCommand(cmd string) bool {
	switch cmd {
	case "tokens create", "tokens list", "tokens revoke", "agents list", "agents revoke", "agents clear-flags":
		return true
	}
	return false
}

func bootstrapCreate(ctx context.Context, c *client, g *globals, tenant, ttl string, w, stderr io.Writer) error {
	var t api.BootstrapToken
	if err := c.send(ctx, "POST", tenantPath(tenant)+"/agent-tokens", api.BootstrapTokenCreate{TTL: ttl}, &t); err != nil {
		return err
	}
	if g.json {
		fmt.Fprintln(stderr, "outpostctl: the token is shown only once; the node keeps only its hash")
		return printJSON(w, struct {
			Token   string    `json:"token"`
			Expires time.Time `json:"expires"`
			ID      string    `json:"id"`
			Tenant  string    `json:"tenant"`
			CAPin   string    `json:"ca_pin"`
			Servers []string  `json:"servers"`
		}{t.Token, t.Expires, t.ID, t.Tenant, t.CAPin, t.Servers})
	}
	servers := strings.Join(t.Servers, ",")
	if servers == "" {
		servers = "URL[,URL…]"
	}
	fmt.Fprintf(w, "created bootstrap token %s for tenant %s, expires %s (single use)\n", t.ID, t.Tenant, stamp(t.Expires))
	fmt.Fprintf(w, "token: %s\n(shown only once: the node keeps only its hash)\n", t.Token)
	fmt.Fprintf(w, "on the host: OUTPOST_AGENT_TOKEN=%s outpost-agent --servers %s --ca-pin %s --state /var/lib/outpost-agent\n", t.Token, servers, t.CAPin)
	return nil
}

func bootstrapList(ctx context.Context, c *client, g *globals, tenant string, w io.Writer) error {
	var ts []api.BootstrapToken
	if err := c.do(ctx, "GET", tenantPath(tenant)+"/agent-tokens", nil, &ts); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, ts)
	}
	tw := newTable(w, "ID\tSTATUS\tAGENT\tCREATED\tEXPIRES\tCREATED BY")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Status, dash(t.Agent), stamp(t.Created), stamp(t.Expires), t.CreatedBy)
	}
	return tw.Flush()
}

func bootstrapRevoke(ctx context.Context, c *client, g *globals, tenant, id string, w io.Writer) error {
	var res map[string]string
	if err := c.do(ctx, "DELETE", tenantPath(tenant)+"/agent-tokens/"+url.PathEscape(id), nil, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	fmt.Fprintf(w, "bootstrap token %s revoked\n", id)
	return nil
}

func agentsPath(tenant string) string {
	if tenant == "" {
		return "/api/v1/agents"
	}
	return tenantPath(tenant) + "/agents"
}

// agentJSON is DESIGN.md's stable shape of `agents list --json`, plus the
// fields this node adds.
type agentJSON struct {
	ID           string    `json:"id"`
	Tenant       string    `json:"tenant"`
	Host         string    `json:"host"`
	Version      string    `json:"version"`
	InstanceUID  string    `json:"instance_uid"`
	Node         string    `json:"node"`
	RTTMs        *float64  `json:"rtt_ms"` // null: not reported
	Mode         string    `json:"mode"`
	ModeReason   string    `json:"mode_reason,omitempty"`
	Health       *string   `json:"health"` // null: not reported
	LastSeen     time.Time `json:"last_seen"`
	CertExpires  time.Time `json:"cert_expires"`
	Capabilities []string  `json:"capabilities"`
	SourceAddr   string    `json:"source_addr,omitempty"`
	Flags        []string  `json:"flags"`
	Revoked      bool      `json:"revoked"`
	Fingerprint  string    `json:"fingerprint"`
	// Config is the agent's last report on a dispatch (null: none yet).
	Config *api.AgentConfigStatus `json:"config"`
}

func agentsList(ctx context.Context, c *client, g *globals, tenant string, w io.Writer) error {
	var as []api.Agent
	if err := c.do(ctx, "GET", agentsPath(tenant), nil, &as); err != nil {
		return err
	}
	if g.json {
		out := []agentJSON{}
		for _, a := range as {
			var health *string
			if a.Health != "" {
				health = &a.Health
			}
			out = append(out, agentJSON{ID: a.ID, Tenant: a.Tenant, Host: a.Host, Version: a.Version, InstanceUID: a.InstanceUID, Node: a.Node,
				RTTMs: a.RTTMs, Mode: a.Mode, ModeReason: a.ModeReason, Health: health, LastSeen: a.LastSeen, CertExpires: a.CertExpires, Capabilities: orEmpty(a.Capabilities), SourceAddr: a.SourceAddr,
				Flags: orEmpty(a.Flags), Revoked: a.Revoked, Fingerprint: a.Fingerprint, Config: a.Config})
		}
		return printJSON(w, out)
	}
	tw := newTable(w, "ID\tTENANT\tHOST\tVERSION\tNODE\tRTT\tMODE\tCAPABILITIES\tHEALTH\tLAST SEEN\tCERT EXPIRES\tCONFIG\tFLAGS")
	var reasons []string
	for _, a := range as {
		if a.ModeReason != "" {
			reasons = append(reasons, fmt.Sprintf("%s (%s) observes through procfs: %s", a.ID, a.Host, a.ModeReason))
		}
		rtt := "-"
		if a.Node != "" && a.RTTMs != nil {
			rtt = fmt.Sprintf("%.1fms", *a.RTTMs)
		}
		health := a.Health
		if health == "" {
			health = "unknown"
		}
		cfg := "-"
		if c := a.Config; c != nil {
			cfg = c.Dispatch + " " + c.Status
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Tenant, a.Host, dash(a.Version), dash(a.Node), rtt,
			dash(a.Mode), dash(strings.Join(a.Capabilities, ",")), health, stamp(a.LastSeen), stamp(a.CertExpires), cfg, dash(strings.Join(a.Flags, "; ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reasons {
		fmt.Fprintln(w, r)
	}
	return nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// agentAction posts an action on an agent and says what it did.
func agentAction(ctx context.Context, c *client, g *globals, tenant, id, action, done string, w io.Writer) error {
	var a api.Agent
	if err := c.do(ctx, "POST", agentsPath(tenant)+"/"+url.PathEscape(id)+"/"+action, nil, &a); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, a)
	}
	fmt.Fprintf(w, "agent %s (%s, tenant %s)%s\n", a.ID, a.Host, a.Tenant, done)
	return nil
}

func agentRevoke(ctx context.Context, c *client, g *globals, tenant, id string, w io.Writer) error {
	return agentAction(ctx, c, g, tenant, id, "revoke", " revoked: its certificate is refused from now on and its connection is closed", w)
}

func agentClearFlags(ctx context.Context, c *client, g *globals, tenant, id string, w io.Writer) error {
	return agentAction(ctx, c, g, tenant, id, "clear-flags", ": flags cleared; their addresses are known now, so new_address is not raised for them again", w)
}
