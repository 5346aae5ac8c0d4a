package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// session logs user in with a password and returns a client on the
// session and the function that ends it.
func session(ctx context.Context, c *client, user string, password func() (string, error)) (*client, func(), error) {
	pw, err := password()
	if err != nil {
		return nil, nil, err
	}
	sess := &client{c.At(c.Addr)}
	sess.Token = ""
	if err := sess.Login(ctx, user, pw); err != nil {
		return nil, nil, sess.worded(err, "/api/v1/login")
	}
	return sess, func() { _ = sess.do(context.WithoutCancel(ctx), "POST", "/api/v1/logout", nil, nil) }, nil
}

// login turns an account's password into an API token for outpostctl,
// as `vault login` does: it logs in, makes a token under the session
// (a tenant token with the account's role there, or a region-admin
// token), logs the session out and prints the token once.
func login(ctx context.Context, c *client, g *globals, user, tenant, role, ttl string, password func() (string, error), w, stderr io.Writer) error {
	sess, end, err := session(ctx, c, user, password)
	if err != nil {
		return err
	}
	// The session is only a step to the token.
	defer end()
	var me api.WhoAmI
	if err := sess.do(ctx, "GET", "/api/v1/whoami", nil, &me); err != nil {
		return err
	}
	switch {
	case tenant == "" && !me.RegionAdmin:
		return fmt.Errorf("%s is not a region admin: say which tenant the token is for with --tenant (%s%s)", user, tenantsOf(me), invitedTo(ctx, sess, user))
	case tenant == "":
		role = "region-admin"
	case me.Tenants[tenant] == "":
		return fmt.Errorf("%s has no role in tenant %q (%s%s)", user, tenant, tenantsOf(me), invitedTo(ctx, sess, user))
	case me.Tenants[tenant] != "admin":
		return fmt.Errorf("%s is %s in tenant %q; only a tenant's admins make API tokens: ask one for a token (`outpostctl tokens api create --tenant %s --role %s --name …`)",
			user, me.Tenants[tenant], tenant, tenant, me.Tenants[tenant])
	case role == "":
		role = me.Tenants[tenant]
	}
	host, _ := os.Hostname()
	in := api.TokenCreate{Name: fmt.Sprintf("outpostctl login %s@%s %s", user, host, time.Now().UTC().Format(time.RFC3339)), Role: role, TTL: ttl}
	var t api.APIToken
	if err := sess.send(ctx, "POST", tokensPath(tenant), in, &t); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, t)
	}
	scope := "the region"
	if t.Tenant != "" {
		scope = "tenant " + t.Tenant
	}
	fmt.Fprintf(stderr, "logged in as %s: API token %s, %s in %s, expires %s (revoke it with `outpostctl tokens api revoke %s`)\n",
		user, t.ID, t.Role, scope, never(t.Expires), t.ID)
	fmt.Fprintf(w, "export OUTPOST_TOKEN=%s\n", t.Token)
	return nil
}

// invitedTo names the tenants that invited user, for an error that
// would otherwise leave an invited account wondering.
func invitedTo(ctx context.Context, sess *client, user string) string {
	var invs []api.Invitation
	if sess.do(ctx, "GET", "/api/v1/invitations", nil, &invs) != nil || len(invs) == 0 {
		return ""
	}
	var names []string
	for _, i := range invs {
		names = append(names, i.Tenant)
	}
	return fmt.Sprintf("; invited to %s: accept with `outpostctl invitations accept TENANT %s`", strings.Join(names, ", "), user)
}

func tenantsOf(me api.WhoAmI) string {
	if len(me.Tenants) == 0 {
		return "the account has no tenants"
	}
	var out []string
	for t, r := range me.Tenants {
		out = append(out, t+": "+r)
	}
	sort.Strings(out)
	return "its tenants: " + strings.Join(out, ", ")
}

// passwordFrom reads a password: the first line of stdin with
// --password-stdin, else from the terminal without echo.
func passwordFrom(ctx context.Context, stdin io.Reader, fromStdin bool, user string, stderr io.Writer) func() (string, error) {
	return func() (string, error) {
		if fromStdin {
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && err != io.EOF {
				return "", fmt.Errorf("reading the password from stdin: %w", err)
			}
			if line = strings.TrimRight(line, "\r\n"); line == "" {
				return "", fmt.Errorf("--password-stdin read an empty password")
			}
			return line, nil
		}
		f, ok := stdin.(*os.File)
		if !ok {
			return "", fmt.Errorf("no terminal to ask for the password: pipe it with --password-stdin")
		}
		fmt.Fprintf(stderr, "password for %s: ", user)
		pw, err := readHidden(ctx, f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("%w: pipe the password with --password-stdin", err)
		}
		return pw, nil
	}
}
