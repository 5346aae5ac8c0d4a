package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/internal/cli"
)

// withTenant is the --tenant flag of commands that act in a tenant's
// space instead of the region's.
func withTenant(c *cobra.Command, tenant *string, what string) {
	c.Flags().StringVar(tenant, "tenant", "", what)
}

// withPasswordStdin is --password-stdin.
func withPasswordStdin(c *cobra.Command, b *bool) {
	c.Flags().BoolVar(b, "password-stdin", false, "read the password from the first line of standard input (default: ask on the terminal, without echo)")
}

func loginCommand(a *app) *cobra.Command {
	var tenant, role, ttl string
	var passwordStdin bool
	c := &cobra.Command{
		Use:   "login USER [--password-stdin] [--tenant T [--role R]] [--ttl 12h]",
		Short: "Log in with a password and print an API token (export OUTPOST_TOKEN=…)",
		Long: `Log in as USER, make an API token under that session, log the session out
and print "export OUTPOST_TOKEN=…" (the token's id, role and expiry go to
standard error). With --tenant T the token is a tenant token with your role
in T (a tenant Admin may ask for less with --role); only a tenant's Admins
make API tokens. Without --tenant a region admin gets a region-admin token.`,
		Example: "  eval \"$(outpostctl login alice --tenant acme)\"\n  outpostctl login admin --password-stdin < admin.password",
		Args:    cli.Args("USER"),
		RunE: func(c *cobra.Command, args []string) error {
			if role != "" && (tenant == "" || !isTenantRole(role)) {
				return cli.Usagef("--role %q: with --tenant, viewer, operator or admin (default: your role in the tenant)", role)
			}
			if ttl == "" {
				ttl = "12h"
			}
			if d, err := time.ParseDuration(ttl); err != nil || d <= 0 {
				return cli.Usagef("--ttl %q: use a positive duration such as 12h", ttl)
			}
			return login(c.Context(), a.client(), &a.g, args[0], tenant, role, ttl, passwordFrom(c.Context(), a.stdin, passwordStdin, args[0], a.stderr), a.stdout, a.stderr)
		},
	}
	withPasswordStdin(c, &passwordStdin)
	withTenant(c, &tenant, "a token of tenant `T`, with your role there (default: a region-admin token)")
	c.Flags().StringVar(&role, "role", "", "with --tenant, a lesser `ROLE` than yours: viewer or operator")
	c.Flags().StringVar(&ttl, "ttl", "", "the token's `DURATION` (default 12h)")
	return c
}

func whoamiCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "Who the token is: actor, region admin, tenant roles",
		Example: "  outpostctl whoami\n  OUTPOST_TOKEN=$(cat ci.token) outpostctl whoami --json",
		RunE:    func(c *cobra.Command, _ []string) error { return whoami(c.Context(), a.client(), &a.g, a.stdout) },
	}
}

func usersCommand(a *app) *cobra.Command {
	grp := cli.Group("users <command>", "Local accounts (region admins)",
		"  outpostctl users create alice\n  outpostctl users list")
	var regionAdmin, passwordStdin bool
	create := &cobra.Command{
		Use:   "create NAME [--region-admin] [--password-stdin]",
		Short: "Create a local account",
		Long: `Create a local account. Without --password-stdin the node generates a
password and shows it once; it keeps only its hash.`,
		Example: "  outpostctl users create alice\n  outpostctl users create ops --region-admin --password-stdin < ops.password",
		Args:    cli.Args("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			password := ""
			if passwordStdin {
				b, err := io.ReadAll(a.stdin)
				if err != nil {
					return fmt.Errorf("reading the password from stdin: %w", err)
				}
				if password = strings.TrimRight(string(b), "\r\n"); password == "" {
					return cli.Usagef("--password-stdin read an empty password; pipe one in, or drop the flag to have one generated")
				}
			}
			in := api.UserCreate{Name: args[0], Password: password, RegionAdmin: regionAdmin}
			return userCreate(c.Context(), a.client(), &a.g, in, a.stdout, a.stderr)
		},
	}
	create.Flags().BoolVar(&regionAdmin, "region-admin", false, "the account runs the region")
	withPasswordStdin(create, &passwordStdin)
	list := &cobra.Command{
		Use:     "list",
		Short:   "Accounts, their roles and lockouts",
		Example: "  outpostctl users list\n  outpostctl users list --json",
		RunE:    func(c *cobra.Command, _ []string) error { return usersList(c.Context(), a.client(), &a.g, a.stdout) },
	}
	unlock := &cobra.Command{
		Use:     "unlock NAME",
		Short:   "End a lockout after failed logins",
		Example: "  outpostctl users unlock alice",
		Args:    cli.Args("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			return userUnlock(c.Context(), a.client(), &a.g, args[0], a.stdout)
		},
	}
	grp.AddCommand(create, list, unlock)
	return grp
}

func tenantsCommand(a *app) *cobra.Command {
	grp := cli.Group("tenants <command>", "Tenants, their members, settings and audit records",
		"  outpostctl tenants create acme --admin alice\n  outpostctl tenants members set acme bob --role operator")
	var admin string
	create := &cobra.Command{
		Use:     "create NAME --admin USER",
		Short:   "Create a tenant and its first Admin (region admins)",
		Long:    `Create a tenant with USER as its first Admin. Region admins cannot reach tenant data, so a tenant needs its own Admin.`,
		Example: "  outpostctl tenants create acme --admin alice",
		Args:    cli.Args("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if admin == "" {
				return cli.Usagef("--admin is required: region admins cannot reach tenant data, so a tenant needs its own Admin")
			}
			return tenantCreate(c.Context(), a.client(), &a.g, api.TenantCreate{Name: args[0], Admin: admin}, a.stdout)
		},
	}
	create.Flags().StringVar(&admin, "admin", "", "the `USER` that becomes the tenant's first Admin")
	list := &cobra.Command{
		Use:     "list",
		Short:   "The tenants you can see, and your role in each",
		Example: "  outpostctl tenants list\n  outpostctl tenants list --json",
		RunE:    func(c *cobra.Command, _ []string) error { return tenantsList(c.Context(), a.client(), &a.g, a.stdout) },
	}
	var autoApprove bool
	settings := &cobra.Command{
		Use:   "settings TENANT [--breakglass-auto-approve=true|false]",
		Short: "Show a tenant's settings, or change them",
		Long: `Without a flag, show the tenant's settings (a Viewer may). With one, change
it (an Admin may).`,
		Example: "  outpostctl tenants settings acme\n  outpostctl tenants settings acme --breakglass-auto-approve=false",
		Args:    cli.Args("TENANT"),
		RunE: func(c *cobra.Command, args []string) error {
			var set *api.TenantSettings
			if c.Flags().Changed("breakglass-auto-approve") {
				set = &api.TenantSettings{BreakGlassAutoApprove: autoApprove}
			}
			return tenantSettings(c.Context(), a.client(), &a.g, args[0], set, a.stdout)
		},
	}
	settings.Flags().BoolVar(&autoApprove, "breakglass-auto-approve", false, "grant region admins' break-glass requests at once")
	var provider bool
	audit := &cobra.Command{
		Use:     "audit TENANT [--provider]",
		Short:   "The tenant's audit records (tenant Admins)",
		Long:    `The tenant's records of the region log, or with --provider of the provider stream: break-glass requests and access to the tenant's data.`,
		Example: "  outpostctl tenants audit acme\n  outpostctl tenants audit acme --provider --json",
		Args:    cli.Args("TENANT"),
		RunE: func(c *cobra.Command, args []string) error {
			return tenantAudit(c.Context(), a.client(), &a.g, args[0], provider, a.stdout)
		},
	}
	audit.Flags().BoolVar(&provider, "provider", false, "the provider stream: break-glass requests and access")
	grp.AddCommand(create, list, membersGroup(a), settings, audit)
	return grp
}

func membersGroup(a *app) *cobra.Command {
	grp := cli.Group("members <command>", "A tenant's members and invitations",
		"  outpostctl tenants members list acme\n  outpostctl tenants members set acme bob --role viewer")
	list := &cobra.Command{
		Use:     "list TENANT",
		Short:   "Members and pending invitations",
		Example: "  outpostctl tenants members list acme",
		Args:    cli.Args("TENANT"),
		RunE: func(c *cobra.Command, args []string) error {
			return membersList(c.Context(), a.client(), &a.g, args[0], a.stdout)
		},
	}
	var role string
	set := &cobra.Command{
		Use:   "set TENANT USER --role viewer|operator|admin",
		Short: "Change a member's role, or invite an account",
		Long: `Change a member's role at once. For an account that is not a member it
records an invitation (auth.invitation_ttl, default 7 days): the account
joins only when it accepts. The answer is the same whether or not an
account of that name exists.`,
		Example: "  outpostctl tenants members set acme bob --role operator\n  outpostctl tenants members set acme carol --role admin",
		Args:    cli.Args("TENANT", "USER"),
		RunE: func(c *cobra.Command, args []string) error {
			if !isTenantRole(role) {
				return cli.Usagef("--role %q: use viewer, operator or admin", role)
			}
			return memberSet(c.Context(), a.client(), &a.g, args[0], args[1], role, a.stdout)
		},
	}
	set.Flags().StringVar(&role, "role", "", "viewer, operator or admin")
	remove := &cobra.Command{
		Use:     "remove TENANT USER",
		Short:   "Remove a member, or withdraw an invitation",
		Long:    `Remove a member (a tenant keeps at least one Admin), or withdraw the account's invitation.`,
		Example: "  outpostctl tenants members remove acme bob",
		Args:    cli.Args("TENANT", "USER"),
		RunE: func(c *cobra.Command, args []string) error {
			return memberRemove(c.Context(), a.client(), &a.g, args[0], args[1], a.stdout)
		},
	}
	grp.AddCommand(list, set, remove)
	return grp
}

func invitationsCommand(a *app) *cobra.Command {
	grp := cli.Group("invitations <command>", "An account's own invitations, answered with its password",
		"  outpostctl invitations list bob\n  outpostctl invitations accept acme bob")
	grp.Long = `An account answers its invitations itself, logged in with its password:
an API token cannot accept one. These commands log in, act, and log out.`
	var passwordStdin bool
	list := &cobra.Command{
		Use:     "list USER [--password-stdin]",
		Short:   "The account's pending invitations",
		Example: "  outpostctl invitations list bob\n  outpostctl invitations list bob --password-stdin < bob.password",
		Args:    cli.Args("USER"),
		RunE: func(c *cobra.Command, args []string) error {
			return invitationsList(c.Context(), a.client(), &a.g, args[0], passwordFrom(c.Context(), a.stdin, passwordStdin, args[0], a.stderr), a.stdout)
		},
	}
	withPasswordStdin(list, &passwordStdin)
	grp.AddCommand(list)
	for _, accept := range []bool{true, false} {
		verb, short := "decline", "Decline an invitation to a tenant"
		if accept {
			verb, short = "accept", "Join a tenant that invited the account"
		}
		c := &cobra.Command{
			Use:     verb + " TENANT USER [--password-stdin]",
			Short:   short,
			Example: "  outpostctl invitations " + verb + " acme bob\n  outpostctl invitations " + verb + " acme bob --password-stdin < bob.password",
			Args:    cli.Args("TENANT", "USER"),
			RunE: func(c *cobra.Command, args []string) error {
				return invitationAnswer(c.Context(), a.client(), &a.g, args[0], args[1], accept,
					passwordFrom(c.Context(), a.stdin, passwordStdin, args[1], a.stderr), a.stdout)
			},
		}
		withPasswordStdin(c, &passwordStdin)
		grp.AddCommand(c)
	}
	return grp
}

func tokensCommand(a *app) *cobra.Command {
	grp := cli.Group("tokens <command>", "Agent bootstrap tokens, and API tokens (tokens api)",
		"  outpostctl tokens create --tenant acme\n  outpostctl tokens api create --name ci --role operator --tenant acme")
	grp.Long = `tokens create, list and revoke are a tenant's agent bootstrap tokens, each
good for one enrollment. tokens api … are API tokens, for outpostctl and
other clients of the API.`
	grp.AddCommand(bootstrapCommands(a)...)
	grp.AddCommand(apiTokensCommand(a))
	return grp
}

func apiTokensCommand(a *app) *cobra.Command {
	grp := cli.Group("api <command>", "API tokens: create, list, revoke",
		"  outpostctl tokens api create --name ci --role region-admin\n  outpostctl tokens api list --tenant acme")
	var tenant, name, role, ttl string
	create := &cobra.Command{
		Use:   "create --name N --role R [--tenant T] [--ttl 720h]",
		Short: "Create an API token, shown once",
		Long: `Create an API token and print it once (the node keeps only its hash).
With --tenant T it is a tenant token (viewer, operator or admin; a tenant
Admin makes it); without, a region token, whose role must be region-admin.`,
		Example: "  outpostctl tokens api create --name ci --role operator --tenant acme --ttl 720h\n  outpostctl tokens api create --name backup --role region-admin",
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case name == "":
				return cli.Usagef("--name is required: say what the token is for")
			case role == "":
				return cli.Usagef("--role is required: viewer, operator or admin with --tenant, else region-admin")
			case tenant == "" && role != "region-admin":
				return cli.Usagef("--role %q needs --tenant T; without --tenant the token is a region token and its role must be region-admin", role)
			case tenant != "" && !isTenantRole(role):
				return cli.Usagef("--role %q: a tenant token is viewer, operator or admin", role)
			}
			if ttl != "" {
				if d, err := time.ParseDuration(ttl); err != nil || d <= 0 {
					return cli.Usagef("--ttl %q: use a positive duration such as 720h", ttl)
				}
			}
			return tokenCreate(c.Context(), a.client(), &a.g, tenant, api.TokenCreate{Name: name, Role: role, TTL: ttl}, a.stdout, a.stderr)
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the token is `TEXT`")
	create.Flags().StringVar(&role, "role", "", "viewer, operator or admin with --tenant; region-admin without")
	withTenant(create, &tenant, "a token of tenant `T` (default: a region token)")
	create.Flags().StringVar(&ttl, "ttl", "", "the token's `DURATION`, e.g. 720h (default: no expiry)")
	list := &cobra.Command{
		Use:     "list [--tenant T]",
		Short:   "List API tokens (not their secrets)",
		Example: "  outpostctl tokens api list\n  outpostctl tokens api list --tenant acme",
		RunE: func(c *cobra.Command, _ []string) error {
			return tokensList(c.Context(), a.client(), &a.g, tenant, a.stdout)
		},
	}
	withTenant(list, &tenant, "list tenant `T`'s tokens (default: the region's)")
	revoke := &cobra.Command{
		Use:     "revoke ID [--tenant T]",
		Short:   "Revoke an API token",
		Example: "  outpostctl tokens api revoke 7c1e9a04b2d3\n  outpostctl tokens api revoke 7c1e9a04b2d3 --tenant acme",
		Args:    cli.Args("ID"),
		RunE: func(c *cobra.Command, args []string) error {
			return tokenRevoke(c.Context(), a.client(), &a.g, tenant, args[0], a.stdout)
		},
	}
	withTenant(revoke, &tenant, "revoke a token of tenant `T`")
	grp.AddCommand(create, list, revoke)
	return grp
}

func breakglassCommand(a *app) *cobra.Command {
	grp := cli.Group("breakglass <command>", "Region admins' requests for access to a tenant's data",
		"  outpostctl breakglass request acme --reason \"INC-42: agents flapping\"\n  outpostctl breakglass approve acme 5d2f8e10c4a9")
	var reason, duration string
	request := &cobra.Command{
		Use:   "request TENANT --reason TEXT [--duration 1h]",
		Short: "Ask a tenant for read access to its data (region admins)",
		Long: `Ask for read access to the tenant's data for --duration (at most 24h). The
tenant's Admins see the reason and approve the request, unless the tenant
approves region admins at once (tenants settings).`,
		Example: "  outpostctl breakglass request acme --reason \"INC-42: agents flapping\"\n  outpostctl breakglass request acme --reason \"ticket 1234\" --duration 4h",
		Args:    cli.Args("TENANT"),
		RunE: func(c *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return cli.Usagef("--reason is required: say why you need the tenant's data (an incident or ticket id); the tenant reads it")
			}
			if duration != "" {
				if d, err := time.ParseDuration(duration); err != nil || d <= 0 {
					return cli.Usagef("--duration %q: use a positive duration up to 24h, such as 1h", duration)
				}
			}
			return breakglassRequest(c.Context(), a.client(), &a.g, args[0], api.BreakGlassRequest{Reason: reason, Duration: duration}, a.stdout)
		},
	}
	request.Flags().StringVar(&reason, "reason", "", "why you need the tenant's data; the tenant reads it")
	request.Flags().StringVar(&duration, "duration", "", "how long the grant lasts, at most 24h (default 1h)")
	list := &cobra.Command{
		Use:     "list [TENANT]",
		Short:   "Grants: a tenant's (its Admins), or every tenant's (region admins)",
		Example: "  outpostctl breakglass list\n  outpostctl breakglass list acme",
		Args:    cli.Args("[TENANT]"),
		RunE: func(c *cobra.Command, args []string) error {
			tenant := ""
			if len(args) == 1 {
				tenant = args[0]
			}
			return breakglassList(c.Context(), a.client(), &a.g, tenant, a.stdout)
		},
	}
	approve := &cobra.Command{
		Use:     "approve TENANT ID",
		Short:   "Approve a grant (tenant Admins)",
		Example: "  outpostctl breakglass approve acme 5d2f8e10c4a9",
		Args:    cli.Args("TENANT", "ID"),
		RunE: func(c *cobra.Command, args []string) error {
			return breakglassApprove(c.Context(), a.client(), &a.g, args[0], args[1], a.stdout)
		},
	}
	grp.AddCommand(request, list, approve)
	return grp
}

func keysCommand(a *app) *cobra.Command {
	grp := cli.Group("keys <command>", "The master key: status and rotation (region admins)",
		"  outpostctl keys status\n  outpostctl keys rotate")
	status := &cobra.Command{
		Use:     "status",
		Short:   "The master key and how many secrets it wraps",
		Long:    `The current and previous master key ids, the stored secrets, and how many are still wrapped by the previous key.`,
		Example: "  outpostctl keys status\n  outpostctl keys status --json",
		RunE: func(c *cobra.Command, _ []string) error {
			return keys(c.Context(), a.client(), &a.g, "GET", "/api/v1/keys", a.stdout)
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Re-wrap stored secrets under the current master key",
		Long: `Re-wrap every stored secret still wrapped by the previous master key under
the current one, and print the status after. Once none is left and every
node restarted with the new key, remove keys.previous_master_key_file.`,
		Example: "  outpostctl keys rotate\n  outpostctl keys rotate --json",
		RunE: func(c *cobra.Command, _ []string) error {
			return keys(c.Context(), a.client(), &a.g, "POST", "/api/v1/keys/rotate", a.stdout)
		},
	}
	grp.AddCommand(status, rotate)
	return grp
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
