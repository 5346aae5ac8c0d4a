package auth

import (
	"encoding/json"
	"strconv"

	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// The Ops functions build the raft.Batch of one identity change; the API
// wraps it with its audit record (raft.Audited). A batch is all or
// nothing, and PutIfAbsent ops make creates fail (result "0") rather than
// overwrite.

func op(kind raft.KVOp, bucket []byte, key string, val []byte) raft.BatchOp {
	return raft.BatchOp{KV: raft.KVCommand{Op: kind, Bucket: bucket, Key: []byte(key), Value: val}}
}

func jsonOp(kind raft.KVOp, bucket []byte, key string, v any) raft.BatchOp {
	b, _ := json.Marshal(v)
	return op(kind, bucket, key, b)
}

func secretOp(kind raft.KVOp, key string, val []byte) raft.BatchOp {
	o := op(kind, BucketSecrets, key, val)
	o.Redact = true
	return o
}

// OpsCreateTenant creates t with admin as its first Admin.
func OpsCreateTenant(t Tenant, admin string) raft.Batch {
	return raft.Batch{
		jsonOp(raft.KVPutIfAbsent, BucketTenants, t.Name, t),
		op(raft.KVPutIfAbsent, BucketTenantIDs, t.ID, []byte(t.Name)),
		op(raft.KVPut, BucketRoles, t.ID+"/"+admin, []byte(Admin.String())),
	}
}

// OpsUpdateTenant rewrites a tenant's settings.
func OpsUpdateTenant(t Tenant) raft.Batch {
	return raft.Batch{jsonOp(raft.KVPut, BucketTenants, t.Name, t)}
}

// OpsCreateUser creates an account; pwHash is "" for OIDC accounts.
func OpsCreateUser(u User, pwHash string) raft.Batch {
	b := raft.Batch{
		jsonOp(raft.KVPutIfAbsent, BucketUsers, u.Name, u),
		op(raft.KVPut, BucketEpochs, u.Name, []byte(NewID(8))),
	}
	if pwHash != "" {
		b = append(b, secretOp(raft.KVPut, "pw:"+u.Name, []byte(pwHash)))
	}
	return b
}

// OpsSetRole gives user role in a tenant.
func OpsSetRole(tenantID, user string, role Role) raft.Batch {
	return raft.Batch{op(raft.KVPut, BucketRoles, tenantID+"/"+user, []byte(role.String()))}
}

// ExpectRole is a guard for a membership batch: the batch applies only
// if user still has role in the tenant when the FSM applies it (result
// "0" otherwise). A change decided from a read outside the FSM (such as
// "another Admin remains") is so decided again inside it.
func ExpectRole(tenantID, user string, role Role) raft.BatchOp {
	return op(raft.KVExpect, BucketRoles, tenantID+"/"+user, []byte(role.String()))
}

// OpsInvite stores an invitation, replacing an earlier one to the same
// account, and deletes expired invitations (stale) of the tenant. It
// applies only while the account has no role in the tenant (a member's
// role is changed directly, OpsSetRole) and while the tenant's invitation
// count is still seq, as read with the pending invitations the caller
// counted against its cap; it raises the count. Result "0" when either
// no longer holds.
func OpsInvite(inv Invitation, stale []Invitation, seq []byte) raft.Batch {
	n, _ := strconv.ParseUint(string(seq), 10, 64)
	b := raft.Batch{
		op(raft.KVExpect, BucketRoles, inv.Tenant+"/"+inv.User, nil),
		op(raft.KVExpect, BucketInviteSeq, inv.Tenant, seq),
		op(raft.KVPut, BucketInviteSeq, inv.Tenant, strconv.AppendUint(nil, n+1, 10)),
		jsonOp(raft.KVPut, BucketInvites, inv.Tenant+"/"+inv.User, inv),
	}
	for _, s := range stale {
		if len(b) >= maxStaleDeletes+4 {
			break // the rest go with later invitations; a batch is bounded
		}
		if s.User != inv.User {
			b = append(b, op(raft.KVDelete, BucketInvites, s.Tenant+"/"+s.User, nil))
		}
	}
	return b
}

// maxStaleDeletes bounds the expired invitations one invitation's batch
// deletes, well inside raft.MaxBatchOps.
const maxStaleDeletes = 32

// OpsAcceptInvitation makes the invited account a member with the
// invited role. raw is the invitation as read: the batch applies only if
// it is still stored unchanged (not withdrawn, replaced or already
// accepted) and the account has no role yet, so an accept never
// overwrites a role (for example demotes a tenant's last Admin).
func OpsAcceptInvitation(inv Invitation, raw []byte) raft.Batch {
	key := inv.Tenant + "/" + inv.User
	return raft.Batch{
		op(raft.KVExpect, BucketInvites, key, raw),
		op(raft.KVExpect, BucketRoles, key, nil),
		op(raft.KVDelete, BucketInvites, key, nil),
		op(raft.KVPut, BucketRoles, key, []byte(inv.Role.String())),
	}
}

// OpsDeleteInvitation withdraws or declines an invitation; raw is the
// invitation as read, so a delete racing an accept or a new invitation
// applies nothing (result "0") rather than report a withdrawal that did
// not happen or erase the newer invitation.
func OpsDeleteInvitation(tenantID, user string, raw []byte) raft.Batch {
	key := tenantID + "/" + user
	return raft.Batch{op(raft.KVExpect, BucketInvites, key, raw), op(raft.KVDelete, BucketInvites, key, nil)}
}

// OpsRemoveRole takes user's role in a tenant away.
func OpsRemoveRole(tenantID, user string) raft.Batch {
	return raft.Batch{op(raft.KVDelete, BucketRoles, tenantID+"/"+user, nil)}
}

// OpsCreateToken stores a token record and the token's hash.
func OpsCreateToken(t Token, token string) raft.Batch {
	return raft.Batch{
		jsonOp(raft.KVPutIfAbsent, BucketTokens, t.ID, t),
		secretOp(raft.KVPut, "tok:"+t.ID, TokenHash(token)),
	}
}

// OpsRevokeToken deletes a token.
func OpsRevokeToken(id string) raft.Batch {
	return raft.Batch{
		op(raft.KVDelete, BucketTokens, id, nil),
		secretOp(raft.KVDelete, "tok:"+id, nil),
	}
}

// OpsEndSessions ends every session of user (logout).
func OpsEndSessions(user string) raft.Batch {
	return raft.Batch{op(raft.KVPut, BucketEpochs, user, []byte(NewID(8)))}
}

// OpsUnlock clears an account's lockout.
func OpsUnlock(user string) raft.Batch {
	return raft.Batch{op(raft.KVDelete, BucketLockout, user, nil)}
}

// OpsPutGrant writes a break-glass grant; create uses PutIfAbsent.
func OpsPutGrant(g Grant, create bool) raft.Batch {
	kind := raft.KVPut
	if create {
		kind = raft.KVPutIfAbsent
	}
	return raft.Batch{jsonOp(kind, BucketGrants, g.Tenant+"/"+g.ID, g)}
}

// BootstrapKey marks a region whose first admin exists.
var BootstrapKey = []byte("auth_bootstrapped")

// OpsBootstrap creates the region's first admin account and its API token,
// once per region.
func OpsBootstrap(u User, pwHash string, t Token, token string) raft.Batch {
	b := raft.Batch{op(raft.KVPutIfAbsent, storage.BucketSystem, string(BootstrapKey), []byte("1"))}
	b = append(b, OpsCreateUser(u, pwHash)...)
	return append(b, OpsCreateToken(t, token)...)
}

// OpsSyncOIDCUser creates or refreshes an OIDC account and sets its roles
// to exactly those its groups map to (have: its current roles).
func OpsSyncOIDCUser(u User, roles, have map[string]Role, exists bool) raft.Batch {
	var b raft.Batch
	if !exists {
		b = OpsCreateUser(u, "")
	} else {
		b = raft.Batch{jsonOp(raft.KVPut, BucketUsers, u.Name, u)}
	}
	for tid, role := range roles {
		if have[tid] != role {
			b = append(b, OpsSetRole(tid, u.Name, role)...)
		}
	}
	for tid := range have {
		if _, keep := roles[tid]; !keep {
			b = append(b, OpsRemoveRole(tid, u.Name)...)
		}
	}
	return b
}
