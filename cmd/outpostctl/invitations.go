package main

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/outpost-mesh/outpost/api"
)

// Invitations are answered by the invited account itself, logged in with
// its password: an API token cannot accept one (the node refuses), so
// these commands log in, act, and log out, as `login` does.

func invitationsList(ctx context.Context, c *client, g *globals, user string, password func() (string, error), w io.Writer) error {
	sess, end, err := session(ctx, c, user, password)
	if err != nil {
		return err
	}
	defer end()
	var invs []api.Invitation
	if err := sess.do(ctx, "GET", "/api/v1/invitations", nil, &invs); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, invs)
	}
	if len(invs) == 0 {
		fmt.Fprintf(w, "%s has no pending invitations\n", user)
		return nil
	}
	tw := newTable(w, "TENANT\tROLE\tINVITED BY\tEXPIRES")
	for _, i := range invs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Tenant, i.Role, i.InvitedBy, stamp(i.Expires))
	}
	return tw.Flush()
}

// invitationAnswer accepts (accept) or declines an invitation.
func invitationAnswer(ctx context.Context, c *client, g *globals, tenant, user string, accept bool, password func() (string, error), w io.Writer) error {
	sess, end, err := session(ctx, c, user, password)
	if err != nil {
		return err
	}
	defer end()
	verb := "decline"
	if accept {
		verb = "accept"
	}
	var res map[string]string
	if err := sess.do(ctx, "POST", "/api/v1/invitations/"+url.PathEscape(tenant)+"/"+verb, nil, &res); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, res)
	}
	if accept {
		fmt.Fprintf(w, "%s is now %s of tenant %s\n", user, res["role"], tenant)
		if res["role"] == "admin" {
			fmt.Fprintf(w, "`outpostctl login %s --tenant %s` makes an API token for it\n", user, tenant)
		}
	} else {
		fmt.Fprintf(w, "%s declined the invitation to tenant %s\n", user, tenant)
	}
	return nil
}
