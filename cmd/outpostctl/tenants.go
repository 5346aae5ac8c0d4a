package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
)

func tenantPath(tenant string) string {
	return "/api/v1/tenants/" + url.PathEscape(tenant)
}

func tenantCreate(ctx context.Context, c *client, g *globals, in api.TenantCreate, w io.Writer) error {
	var t api.Tenant
	if err := c.send(ctx, "POST", "/api/v1/tenants", in, &t); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, t)
	}
	fmt.Fprintf(w, "created tenant %s (id %s); %s is its Admin\n", t.Name, t.ID, in.Admin)
	return nil
}

func tenantsList(ctx context.Context, c *client, g *globals, w io.Writer) error {
	var ts []api.Tenant
	if err := c.do(ctx, "GET", "/api/v1/tenants", nil, &ts); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, ts)
	}
	tw := newTable(w, "NAME\tID\tCREATED\tYOUR ROLE")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.ID, stamp(t.Created), dash(t.Role))
	}
	return tw.Flush()
}

func membersList(ctx context.Context, c *client, g *globals, tenant string, w io.Writer) error {
	var ms []api.TenantMember
	if err := c.do(ctx, "GET", tenantPath(tenant)+"/members", nil, &ms); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, ms)
	}
	tw := newTable(w, "USER\tROLE\tSTATUS")
	for _, m := range ms {
		status := dash(m.Status)
		if m.Status == "invited" {
			status = fmt.Sprintf("invited by %s, until %s", m.InvitedBy, stamp(m.Expires))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.User, m.Role, status)
	}
	return tw.Flush()
}

func memberSet(ctx context.Context, c *client, g *globals, tenant, user, role string, w io.Writer) error {
	var m api.TenantMember
	in := struct {
		Role string `json:"role"`
	}{role}
	if err := c.send(ctx, "PUT", tenantPath(tenant)+"/members/"+url.PathEscape(user), in, &m); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, m)
	}
	if m.Status == "invited" {
		fmt.Fprintf(w, "invited %s as %s of tenant %s until %s; the account joins when it accepts (`outpostctl invitations accept %s %s`)\n",
			m.User, m.Role, tenant, stamp(m.Expires), tenant, m.User)
		return nil
	}
	fmt.Fprintf(w, "%s is now %s of tenant %s\n", m.User, m.Role, tenant)
	return nil
}

func memberRemove(ctx context.Context, c *client, g *globals, tenant, user string, w io.Writer) error {
	var res map[string]string
	if err := c.do(ctx, "DELETE", tenantPath(tenant)+"/members/"+url.PathEscape(user), nil, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	if res["status"] == "invitation withdrawn" {
		fmt.Fprintf(w, "invitation of %s to tenant %s withdrawn\n", user, tenant)
		return nil
	}
	fmt.Fprintf(w, "%s removed from tenant %s\n", user, tenant)
	return nil
}

// tenantSettings shows the tenant's settings, or replaces them with set.
func tenantSettings(ctx context.Context, c *client, g *globals, tenant string, set *api.TenantSettings, w io.Writer) error {
	var s api.TenantSettings
	var err error
	if set == nil {
		err = c.do(ctx, "GET", tenantPath(tenant)+"/settings", nil, &s)
	} else {
		err = c.send(ctx, "PUT", tenantPath(tenant)+"/settings", set, &s)
	}
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(w, s)
	}
	if s.BreakGlassAutoApprove {
		fmt.Fprintln(w, "breakglass auto-approve: on (a region admin's break-glass request is granted at once; each is still recorded in the provider stream)")
	} else {
		fmt.Fprintln(w, "breakglass auto-approve: off (a region admin's break-glass request waits for an Admin of the tenant to approve it)")
	}
	return nil
}

// tenantAudit prints the tenant's records of the region's audit log, or of
// the provider stream. The server returns at most a page per request, so
// it reads on from after the last record until a page comes back empty.
func tenantAudit(ctx context.Context, c *client, g *globals, tenant string, provider bool, w io.Writer) error {
	path := tenantPath(tenant) + "/audit"
	if provider {
		path += "/provider"
	}
	var all audit.Page
	for from := int64(0); ; {
		var page audit.Page
		if err := c.do(ctx, "GET", fmt.Sprintf("%s?from=%d", path, from), nil, &page); err != nil {
			return err
		}
		all.Size = page.Size
		if len(page.Entries) == 0 {
			break
		}
		all.Entries = append(all.Entries, page.Entries...)
		next := page.Entries[len(page.Entries)-1].Seq + 1
		if next <= from {
			return fmt.Errorf("the node returned records from %d when asked from %d", next-1, from)
		}
		from = next
	}
	if all.Entries == nil {
		all.Entries = []audit.Entry{}
	}
	if g.json {
		return printJSON(w, all)
	}
	if len(all.Entries) == 0 {
		fmt.Fprintf(w, "no audit records for tenant %s\n", tenant)
		return nil
	}
	tw := newTable(w, "SEQ\tTIME\tACTOR\tACTION\tENTITY")
	for _, e := range all.Entries {
		var r audit.Record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			fmt.Fprintf(tw, "%d\t(unreadable record: %v)\t\t\t\n", e.Seq, err)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.Seq, stamp(r.Time), r.Actor, r.Action, r.Entity)
	}
	return tw.Flush()
}

func breakglassRequest(ctx context.Context, c *client, g *globals, tenant string, in api.BreakGlassRequest, w io.Writer) error {
	var gr api.Grant
	if err := c.send(ctx, "POST", tenantPath(tenant)+"/breakglass", in, &gr); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, gr)
	}
	if gr.Approved {
		fmt.Fprintf(w, "grant %s on tenant %s approved at once by %s; active until %s\n", gr.ID, gr.Tenant, gr.ApprovedBy, stamp(gr.Expires))
		return nil
	}
	fmt.Fprintf(w, "requested grant %s on tenant %s for %s\nit waits for an Admin of the tenant: outpostctl breakglass approve %s %s\n", gr.ID, gr.Tenant, gr.Duration, gr.Tenant, gr.ID)
	return nil
}

// breakglassList lists one tenant's grants (for its Admins), or every
// tenant's when tenant is empty (for region admins).
func breakglassList(ctx context.Context, c *client, g *globals, tenant string, w io.Writer) error {
	path := "/api/v1/breakglass"
	if tenant != "" {
		path = tenantPath(tenant) + "/breakglass"
	}
	var gs []api.Grant
	if err := c.do(ctx, "GET", path, nil, &gs); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, gs)
	}
	tw := newTable(w, "ID\tTENANT\tREQUESTER\tDURATION\tSTATE\tAPPROVED BY\tEXPIRES\tREASON")
	for _, gr := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", gr.ID, gr.Tenant, gr.Requester, gr.Duration, grantState(gr), dash(gr.ApprovedBy), stamp(gr.Expires), gr.Reason)
	}
	return tw.Flush()
}

func grantState(gr api.Grant) string {
	switch {
	case !gr.Approved:
		return "pending"
	case gr.Active:
		return "active"
	}
	return "expired"
}

func breakglassApprove(ctx context.Context, c *client, g *globals, tenant, id string, w io.Writer) error {
	var gr api.Grant
	if err := c.do(ctx, "POST", tenantPath(tenant)+"/breakglass/"+url.PathEscape(id)+"/approve", nil, &gr); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, gr)
	}
	fmt.Fprintf(w, "grant %s approved: %s may reach tenant %s until %s\n", gr.ID, gr.Requester, gr.Tenant, stamp(gr.Expires))
	return nil
}
