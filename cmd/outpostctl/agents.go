package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/cli"
)

// Agent bootstrap tokens and agents. `tokens create|list|revoke` are the
// tenant's bootstrap tokens (API tokens are `tokens api …`).

// bootstrapCommands are `tokens create|list|revoke`: a tenant's agent
// bootstrap tokens.
func bootstrapCommands(a *app) []*cobra.Command {
	var tenant, ttl string
	create := &cobra.Command{
		Use:   "create --tenant T [--ttl 15m]",
		Short: "An agent bootstrap token (single use), with the outpost-agent line to run",
		Long: `Make a bootstrap token that enrolls one agent into tenant T, good for
--ttl (1m to 24h, default 15m), and print it once with the region CA's pin
and the outpost-agent command line to run on the host.`,
		Example: "  outpostctl tokens create --tenant acme\n  outpostctl tokens create --tenant acme --ttl 1h --json",
		RunE: func(c *cobra.Command, _ []string) error {
			if tenant == "" {
				return cli.Usagef("--tenant is required: a bootstrap token enrolls one agent into that tenant")
			}
			if ttl != "" {
				if d, err := time.ParseDuration(ttl); err != nil || d < time.Minute || d > 24*time.Hour {
					return cli.Usagef("--ttl %q: use a duration from 1m to 24h, such as 15m", ttl)
				}
			}
			return bootstrapCreate(c.Context(), a.client(), &a.g, tenant, ttl, a.stdout, a.stderr)
		},
	}
	withTenant(create, &tenant, "the tenant `T` the agent enrolls into (required)")
	create.Flags().StringVar(&ttl, "ttl", "", "how long the token can be used, 1m to 24h (default 15m)")
	list := &cobra.Command{
		Use:     "list --tenant T",
		Short:   "A tenant's bootstrap tokens and their status",
		Long:    `A tenant's bootstrap tokens: unused, redeemed (and by which agent), revoked or expired.`,
		Example: "  outpostctl tokens list --tenant acme",
		RunE: func(c *cobra.Command, _ []string) error {
			if tenant == "" {
				return cli.Usagef("--tenant is required")
			}
			return bootstrapList(c.Context(), a.client(), &a.g, tenant, a.stdout)
		},
	}
	withTenant(list, &tenant, "the tenant `T` whose tokens to list (required)")
	revoke := &cobra.Command{
		Use:     "revoke ID --tenant T",
		Short:   "Revoke an unused bootstrap token",
		Example: "  outpostctl tokens revoke 9b04e1c2a7f5 --tenant acme",
		Args:    cli.Args("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			if tenant == "" {
				return cli.Usagef("--tenant is required")
			}
			return bootstrapRevoke(c.Context(), a.client(), &a.g, tenant, args[0], a.stdout)
		},
	}
	withTenant(revoke, &tenant, "the token's tenant `T` (required)")
	return []*cobra.Command{create, list, revoke}
}

func agentsCommand(a *app) *cobra.Command {
	grp := cli.Group("agents <command>", "Enrolled agents: list, revoke, clear flags",
		"  outpostctl agents list --tenant acme\n  outpostctl agents revoke ag-3f9c21d0 --tenant acme")
	grp.Long = `Agents enroll with a bootstrap token (` + "`outpostctl tokens create`" + `) and attach to
the nearest node. Region admins see every tenant's agents; with --tenant T,
tenant T's Viewers list them and its Admins act on them.`
	var tenant string
	list := &cobra.Command{
		Use:   "list [--tenant T]",
		Short: "Agents: tenant, host, version, node, RTT, capabilities, health, flags",
		Long: `Each agent: its tenant, host, version, the node it is attached to and its
RTT, capabilities, health, last seen, certificate expiry and flags (a host
that moved, a certificate used from two places).`,
		Example: "  outpostctl agents list\n  outpostctl agents list --tenant acme --json",
		RunE: func(c *cobra.Command, _ []string) error {
			return agentsList(c.Context(), a.client(), &a.g, tenant, a.stdout)
		},
	}
	withTenant(list, &tenant, "list tenant `T`'s agents (default: all, for region admins)")
	revoke := &cobra.Command{
		Use:     "revoke ID [--tenant T]",
		Short:   "Refuse the agent's certificate from now on",
		Example: "  outpostctl agents revoke ag-3f9c21d0\n  outpostctl agents revoke ag-3f9c21d0 --tenant acme",
		Args:    cli.Args("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			return agentRevoke(c.Context(), a.client(), &a.g, tenant, args[0], a.stdout)
		},
	}
	withTenant(revoke, &tenant, "the agent's tenant `T`")
	clearFlags := &cobra.Command{
		Use:   "clear-flags ID [--tenant T]",
		Short: "Acknowledge an agent's flags",
		Long: `Acknowledge the agent's flags (a host that moved, a copy that was dealt
with): the flags shown are removed and the clearing is audited with what
they said.`,
		Example: "  outpostctl agents clear-flags ag-3f9c21d0\n  outpostctl agents clear-flags ag-3f9c21d0 --tenant acme",
		Args:    cli.Args("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			return agentClearFlags(c.Context(), a.client(), &a.g, tenant, args[0], a.stdout)
		},
	}
	withTenant(clearFlags, &tenant, "the agent's tenant `T`")
	grp.AddCommand(list, revoke, clearFlags)
	return grp
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

// agentJSON is the stable shape of `agents list --json` (docs/cli.md), plus the
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
