package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/internal/syncfile"
	"github.com/outpost-mesh/outpost/node/auth"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// bootstrapAdmin runs on every node; whichever is leader while the region
// has no admin creates the first region admin ("admin"), its API token and
// the master-key canary, in one entry. The credentials are written to
// files private to this node first and renamed into place only if the
// region accepted them, so two leaders in a row cannot leave credentials
// that do not work.
func (n *Node) bootstrapAdmin(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.bootstrapped() {
			return
		}
		if !n.region.IsLeader() {
			continue
		}
		if err := n.createAdmin(ctx); err != nil {
			n.logger.Warn("creating the first region admin failed; retrying", "err", err)
		}
	}
}

func (n *Node) bootstrapped() bool {
	found := false
	_ = n.store.View(func(tx *storage.Tx) error {
		found = tx.Get(storage.BucketSystem, auth.BootstrapKey) != nil
		return nil
	})
	return found
}

// AdminUser is the first region admin's account name.
const AdminUser = "admin"

func (n *Node) createAdmin(ctx context.Context) error {
	password := auth.GeneratePassword()
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	token, id := auth.NewToken()
	now := time.Now().UTC()
	canary, err := n.keys.Wrap(string(storage.BucketSystem), string(canaryKey), canaryPlain)
	if err != nil {
		return err
	}
	b := auth.OpsBootstrap(auth.User{Name: AdminUser, Source: "local", RegionAdmin: true, Created: now}, hash,
		auth.Token{ID: id, Name: "bootstrap", RegionAdmin: true, Created: now, CreatedBy: "system", Owner: AdminUser}, token)
	b = append(b, raft.BatchOp{KV: raft.KVCommand{Op: raft.KVPutIfAbsent, Bucket: storage.BucketSystem, Key: canaryKey, Value: canary}, Redact: true})
	inner, err := b.Encode()
	if err != nil {
		return err
	}
	tokFile, pwFile := n.cfg.AdminTokenFile, adminPasswordFile(n.cfg.AdminTokenFile)
	tmpTok, tmpPw := tokFile+".tmp-"+n.cfg.NodeID, pwFile+".tmp-"+n.cfg.NodeID
	if err := os.MkdirAll(filepath.Dir(tokFile), 0o700); err != nil {
		return err
	}
	for f, v := range map[string]string{tmpTok: token, tmpPw: password} {
		if err := syncfile.Write(f, strings.NewReader(v+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", f, err)
		}
	}
	meta, err := audit.EncodeMeta(audit.Meta{Time: now, Node: n.cfg.NodeID, Actor: "system", Action: "region.bootstrap", Entity: "user/" + AdminUser})
	if err != nil {
		return err
	}
	cmd, err := raft.Audited(meta, inner)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := n.region.Apply(actx, cmd)
	if err != nil || res.Err != nil || string(res.Value) != "1" {
		os.Remove(tmpTok)
		os.Remove(tmpPw)
		if err == nil {
			err = res.Err
		}
		return err
	}
	if err := errors.Join(os.Rename(tmpTok, tokFile), os.Rename(tmpPw, pwFile)); err != nil {
		return fmt.Errorf("the first region admin was created but its credentials could not be saved (%v); they are in %s and %s", err, tmpTok, tmpPw)
	}
	n.logger.Info("created the first region admin", "user", AdminUser, "token_file", tokFile, "password_file", pwFile)
	return nil
}

// adminPasswordFile is where the first admin's password goes: beside the
// token file.
func adminPasswordFile(tokenFile string) string {
	return filepath.Join(filepath.Dir(tokenFile), "admin.password")
}

// AdminPasswordFile is where this node writes the first admin's password
// if it bootstraps the region.
func (n *Node) AdminPasswordFile() string { return adminPasswordFile(n.cfg.AdminTokenFile) }
