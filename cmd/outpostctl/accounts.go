package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// accountOpts are the flags of the account, tenant, token, break-glass
// and key commands.
type accountOpts struct {
	admin         string // tenants create: the tenant's first Admin
	role          string // tenants members set, tokens api create
	name          string // tokens api create
	tenant        string // tokens api: a tenant's tokens instead of region tokens
	ttl           string // tokens api create
	reason        string // breakglass request
	duration      string // breakglass request
	regionAdmin   bool   // users create
	passwordStdin bool   // users create
	provider      bool   // tenants audit: the provider stream
	autoApprove   bool   // tenants settings; applied only when given
}

func (o *accountOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.admin, "admin", "", "the account that becomes the tenant's first Admin (tenants create)")
	fs.StringVar(&o.role, "role", "", "viewer, operator or admin; region-admin for a region token (tenants members set, tokens api create)")
	fs.StringVar(&o.name, "name", "", "what the token is for (tokens api create)")
	fs.StringVar(&o.tenant, "tenant", "", "the tenant whose tokens or dispatches to manage (tokens api, dispatches)")
	fs.StringVar(&o.ttl, "ttl", "", "token lifetime, e.g. 720h; default: no expiry (tokens api create)")
	fs.StringVar(&o.reason, "reason", "", "why you need the tenant's data; the tenant reads it (breakglass request)")
	fs.StringVar(&o.duration, "duration", "", "how long the grant lasts, at most 24h, default 1h (breakglass request); how long the node is cut off, default 10s (drill partition)")
	fs.BoolVar(&o.regionAdmin, "region-admin", false, "the account runs the region (users create)")
	fs.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from stdin (users create, login)")
	fs.BoolVar(&o.provider, "provider", false, "the provider stream: break-glass requests and access (tenants audit)")
	fs.BoolVar(&o.autoApprove, "breakglass-auto-approve", false, "grant region admins' break-glass requests at once (tenants settings)")
}

// cmdline is one account command as typed.
type cmdline struct {
	name           string          // the command words: "tenants members set"
	pos            []string        // positional arguments
	given          map[string]bool // flags set, beyond --addr, --token and --json
	stdin          io.Reader
	stdout, stderr io.Writer
}

// check enforces the command's positional arguments: minArgs to
// maxArgs of them. Its flags were checked against the commands table
// before it ran.
func (l cmdline) check(form string, minArgs, maxArgs int) error {
	if len(l.pos) < minArgs || len(l.pos) > maxArgs {
		return usageErr(l.stderr, form)
	}
	return nil
}

// usage reports a usage error with what was wrong.
func (l cmdline) usage(form, format string, args ...any) error {
	fmt.Fprintf(l.stderr, "outpostctl %s: %s\n", l.name, fmt.Sprintf(format, args...))
	return usageErr(l.stderr, form)
}

// isAccountCommand reports whether runAccount owns cmd.
func isAccountCommand(cmd string) bool {
	word, _, _ := strings.Cut(cmd, " ")
	switch word {
	case "login", "whoami", "users", "tenants", "invitations", "tokens", "breakglass", "keys", "agents":
		return true
	}
	return false
}

// runAccount checks and runs the account, tenant, token, break-glass and
// key commands.
func runAccount(ctx context.Context, c *client, g *globals, o accountOpts, l cmdline) error {
	w := l.stdout
	if isAgentCommand(l.name) {
		return runAgents(ctx, c, g, o, l)
	}
	switch l.name {
	case "login":
		const form = "login USER [--password-stdin] [--tenant T [--role R]] [--ttl 12h]"
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		if o.role != "" && (o.tenant == "" || !isTenantRole(o.role)) {
			return l.usage(form, "--role %q: with --tenant, viewer, operator or admin (default: your role in the tenant)", o.role)
		}
		ttl := o.ttl
		if ttl == "" {
			ttl = "12h"
		}
		if d, err := time.ParseDuration(ttl); err != nil || d <= 0 {
			return l.usage(form, "--ttl %q: use a positive duration such as 12h", ttl)
		}
		return login(ctx, c, g, l.pos[0], o.tenant, o.role, ttl, passwordFrom(ctx, l.stdin, o.passwordStdin, l.pos[0], l.stderr), w, l.stderr)
	case "whoami":
		if err := l.check("whoami", 0, 0); err != nil {
			return err
		}
		return whoami(ctx, c, g, w)

	case "users create":
		const form = "users create NAME [--region-admin] [--password-stdin]"
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		password := ""
		if o.passwordStdin {
			b, err := io.ReadAll(l.stdin)
			if err != nil {
				return fmt.Errorf("reading the password from stdin: %w", err)
			}
			if password = strings.TrimRight(string(b), "\r\n"); password == "" {
				return l.usage(form, "--password-stdin read an empty password; pipe one in, or drop the flag to have one generated")
			}
		}
		in := api.UserCreate{Name: l.pos[0], Password: password, RegionAdmin: o.regionAdmin}
		return userCreate(ctx, c, g, in, w, l.stderr)
	case "users list":
		if err := l.check("users list", 0, 0); err != nil {
			return err
		}
		return usersList(ctx, c, g, w)
	case "users unlock":
		if err := l.check("users unlock NAME", 1, 1); err != nil {
			return err
		}
		return userUnlock(ctx, c, g, l.pos[0], w)

	case "tenants create":
		const form = "tenants create NAME --admin USER"
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		if o.admin == "" {
			return l.usage(form, "--admin is required: region admins cannot reach tenant data, so a tenant needs its own Admin")
		}
		return tenantCreate(ctx, c, g, api.TenantCreate{Name: l.pos[0], Admin: o.admin}, w)
	case "tenants list":
		if err := l.check("tenants list", 0, 0); err != nil {
			return err
		}
		return tenantsList(ctx, c, g, w)
	case "tenants members list":
		if err := l.check("tenants members list TENANT", 1, 1); err != nil {
			return err
		}
		return membersList(ctx, c, g, l.pos[0], w)
	case "tenants members set":
		const form = "tenants members set TENANT USER --role viewer|operator|admin"
		if err := l.check(form, 2, 2); err != nil {
			return err
		}
		if !isTenantRole(o.role) {
			return l.usage(form, "--role %q: use viewer, operator or admin", o.role)
		}
		return memberSet(ctx, c, g, l.pos[0], l.pos[1], o.role, w)
	case "tenants members remove":
		if err := l.check("tenants members remove TENANT USER", 2, 2); err != nil {
			return err
		}
		return memberRemove(ctx, c, g, l.pos[0], l.pos[1], w)
	case "invitations list":
		if err := l.check("invitations list USER [--password-stdin]", 1, 1); err != nil {
			return err
		}
		return invitationsList(ctx, c, g, l.pos[0], passwordFrom(ctx, l.stdin, o.passwordStdin, l.pos[0], l.stderr), w)
	case "invitations accept", "invitations decline":
		if err := l.check(l.name+" TENANT USER [--password-stdin]", 2, 2); err != nil {
			return err
		}
		return invitationAnswer(ctx, c, g, l.pos[0], l.pos[1], l.name == "invitations accept",
			passwordFrom(ctx, l.stdin, o.passwordStdin, l.pos[1], l.stderr), w)
	case "tenants settings":
		if err := l.check("tenants settings TENANT [--breakglass-auto-approve=true|false]", 1, 1); err != nil {
			return err
		}
		var set *api.TenantSettings
		if l.given["breakglass-auto-approve"] {
			set = &api.TenantSettings{BreakGlassAutoApprove: o.autoApprove}
		}
		return tenantSettings(ctx, c, g, l.pos[0], set, w)
	case "tenants audit":
		if err := l.check("tenants audit TENANT [--provider]", 1, 1); err != nil {
			return err
		}
		return tenantAudit(ctx, c, g, l.pos[0], o.provider, w)

	case "tokens api create":
		const form = "tokens api create --name N --role R [--tenant T] [--ttl 720h]"
		if err := l.check(form, 0, 0); err != nil {
			return err
		}
		switch {
		case o.name == "":
			return l.usage(form, "--name is required: say what the token is for")
		case o.role == "":
			return l.usage(form, "--role is required: viewer, operator or admin with --tenant, else region-admin")
		case o.tenant == "" && o.role != "region-admin":
			return l.usage(form, "--role %q needs --tenant T; without --tenant the token is a region token and its role must be region-admin", o.role)
		case o.tenant != "" && !isTenantRole(o.role):
			return l.usage(form, "--role %q: a tenant token is viewer, operator or admin", o.role)
		}
		if o.ttl != "" {
			if d, err := time.ParseDuration(o.ttl); err != nil || d <= 0 {
				return l.usage(form, "--ttl %q: use a positive duration such as 720h", o.ttl)
			}
		}
		return tokenCreate(ctx, c, g, o.tenant, api.TokenCreate{Name: o.name, Role: o.role, TTL: o.ttl}, w, l.stderr)
	case "tokens api list":
		if err := l.check("tokens api list [--tenant T]", 0, 0); err != nil {
			return err
		}
		return tokensList(ctx, c, g, o.tenant, w)
	case "tokens api revoke":
		if err := l.check("tokens api revoke ID [--tenant T]", 1, 1); err != nil {
			return err
		}
		return tokenRevoke(ctx, c, g, o.tenant, l.pos[0], w)

	case "breakglass request":
		const form = "breakglass request TENANT --reason TEXT [--duration 1h]"
		if err := l.check(form, 1, 1); err != nil {
			return err
		}
		if strings.TrimSpace(o.reason) == "" {
			return l.usage(form, "--reason is required: say why you need the tenant's data (an incident or ticket id); the tenant reads it")
		}
		if o.duration != "" {
			if d, err := time.ParseDuration(o.duration); err != nil || d <= 0 {
				return l.usage(form, "--duration %q: use a positive duration up to 24h, such as 1h", o.duration)
			}
		}
		return breakglassRequest(ctx, c, g, l.pos[0], api.BreakGlassRequest{Reason: o.reason, Duration: o.duration}, w)
	case "breakglass list":
		if err := l.check("breakglass list [TENANT]", 0, 1); err != nil {
			return err
		}
		tenant := ""
		if len(l.pos) == 1 {
			tenant = l.pos[0]
		}
		return breakglassList(ctx, c, g, tenant, w)
	case "breakglass approve":
		if err := l.check("breakglass approve TENANT ID", 2, 2); err != nil {
			return err
		}
		return breakglassApprove(ctx, c, g, l.pos[0], l.pos[1], w)

	case "keys status":
		if err := l.check("keys status", 0, 0); err != nil {
			return err
		}
		return keys(ctx, c, g, "GET", "/api/v1/keys", w)
	case "keys rotate":
		if err := l.check("keys rotate", 0, 0); err != nil {
			return err
		}
		return keys(ctx, c, g, "POST", "/api/v1/keys/rotate", w)
	}
	fmt.Fprintf(l.stderr, "outpostctl: unknown command %q\n%s", l.name, usage)
	return errUsage
}

func isTenantRole(r string) bool {
	return r == "viewer" || r == "operator" || r == "admin"
}

func whoami(ctx context.Context, c *client, g *globals, w io.Writer) error {
	var me api.WhoAmI
	if err := c.do(ctx, "GET", "/api/v1/whoami", nil, &me); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, me)
	}
	fmt.Fprintf(w, "Actor:        %s\n", me.Actor)
	if me.User != "" {
		fmt.Fprintf(w, "User:         %s\n", me.User)
	}
	fmt.Fprintf(w, "Region admin: %s\n", yesNo(me.RegionAdmin))
	if len(me.Tenants) == 0 {
		fmt.Fprintln(w, "Tenants:      none")
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w, "TENANT\tROLE")
	for _, t := range slices.Sorted(maps.Keys(me.Tenants)) {
		fmt.Fprintf(tw, "%s\t%s\n", t, me.Tenants[t])
	}
	return tw.Flush()
}

func userCreate(ctx context.Context, c *client, g *globals, in api.UserCreate, w, stderr io.Writer) error {
	var u api.User
	if err := c.send(ctx, "POST", "/api/v1/users", in, &u); err != nil {
		return err
	}
	if g.json {
		if u.Password != "" {
			fmt.Fprintln(stderr, "outpostctl: the generated password is shown only once; the node keeps only its hash")
		}
		return printJSON(w, u)
	}
	kind := "account"
	if u.RegionAdmin {
		kind = "region admin account"
	}
	fmt.Fprintf(w, "created %s %s\n", kind, u.Name)
	if u.Password != "" {
		fmt.Fprintf(w, "password: %s\n(shown only once: the node keeps only its hash; hand it over securely)\n", u.Password)
	}
	return nil
}

func usersList(ctx context.Context, c *client, g *globals, w io.Writer) error {
	var us []api.User
	if err := c.do(ctx, "GET", "/api/v1/users", nil, &us); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, us)
	}
	tw := newTable(w, "NAME\tSOURCE\tREGION ADMIN\tTENANTS\tLOCKED UNTIL")
	for _, u := range us {
		var roles []string
		for _, t := range slices.Sorted(maps.Keys(u.Tenants)) {
			roles = append(roles, t+"="+u.Tenants[t])
		}
		locked := "-"
		if u.LockedUntil != nil {
			locked = stamp(*u.LockedUntil)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Source, yesNo(u.RegionAdmin), dash(strings.Join(roles, ",")), locked)
	}
	return tw.Flush()
}

func userUnlock(ctx context.Context, c *client, g *globals, name string, w io.Writer) error {
	var res map[string]string
	if err := c.do(ctx, "POST", "/api/v1/users/"+url.PathEscape(name)+"/unlock", nil, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	fmt.Fprintf(w, "account %s unlocked\n", name)
	return nil
}

// tokensPath is where a tenant's API tokens live, or the region's when
// tenant is empty.
func tokensPath(tenant string) string {
	if tenant == "" {
		return "/api/v1/tokens"
	}
	return tenantPath(tenant) + "/tokens"
}

func tokenCreate(ctx context.Context, c *client, g *globals, tenant string, in api.TokenCreate, w, stderr io.Writer) error {
	var t api.APIToken
	if err := c.send(ctx, "POST", tokensPath(tenant), in, &t); err != nil {
		return err
	}
	if g.json {
		fmt.Fprintln(stderr, "outpostctl: the token is shown only once; the node keeps only its hash")
		return printJSON(w, t)
	}
	scope := "the region"
	if t.Tenant != "" {
		scope = "tenant " + t.Tenant
	}
	fmt.Fprintf(w, "created API token %s (%q): %s in %s, expires %s\n", t.ID, t.Name, t.Role, scope, never(t.Expires))
	fmt.Fprintf(w, "token: %s\n(shown only once: the node keeps only its hash; store it now, e.g. as OUTPOST_TOKEN)\n", t.Token)
	return nil
}

func tokensList(ctx context.Context, c *client, g *globals, tenant string, w io.Writer) error {
	var ts []api.APIToken
	if err := c.do(ctx, "GET", tokensPath(tenant), nil, &ts); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, ts)
	}
	tw := newTable(w, "ID\tNAME\tROLE\tTENANT\tCREATED\tEXPIRES\tCREATED BY")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, dash(t.Tenant), stamp(t.Created), never(t.Expires), t.CreatedBy)
	}
	return tw.Flush()
}

func tokenRevoke(ctx context.Context, c *client, g *globals, tenant, id string, w io.Writer) error {
	var res map[string]string
	if err := c.do(ctx, "DELETE", tokensPath(tenant)+"/"+url.PathEscape(id), nil, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	fmt.Fprintf(w, "token %s revoked\n", id)
	return nil
}

func newTable(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// stamp formats a time for tables: UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// never is stamp for expiry times, where zero means no expiry.
func never(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return stamp(t)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
