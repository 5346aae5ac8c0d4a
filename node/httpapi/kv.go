package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// The key/value routes serve two spaces the same way: the region's
// infrastructure entries (/api/v1/kv, region admins) and each tenant's
// data (/api/v1/tenants/{tenant}/kv), reached only through the handle
// authorize minted.

// kvReader is a plain or tenant-scoped transaction, read side.
type kvReader interface {
	Get(bucket, key []byte) []byte
	ForEach(bucket, prefix []byte, fn func(k, v []byte) bool)
}

// kvSpace is where a key/value route reads and writes.
type kvSpace struct {
	bucket []byte
	open   func(*storage.Tx) kvReader
	encode func(raft.KVCommand) ([]byte, error)
	action string // audit action prefix
	tenant string
	// redact keeps values out of the audit record: tenant data, since
	// region admins read the region log.
	redact bool
}

func regionKV() kvSpace {
	return kvSpace{bucket: storage.BucketKV, open: func(tx *storage.Tx) kvReader { return tx },
		encode: raft.KVCommand.Encode, action: "kv"}
}

var tenantKVBucket = []byte("kv")

func tenantKV(c *call) kvSpace {
	return kvSpace{bucket: tenantKVBucket, open: func(tx *storage.Tx) kvReader { return tx.Tenant(c.h) },
		encode: func(kv raft.KVCommand) ([]byte, error) {
			return raft.TenantKV{Tenant: c.h.ID(), KVCommand: kv}.Encode()
		},
		action: "tenant.kv", tenant: c.h.ID(), redact: true}
}

func (s *server) kvGet(w http.ResponseWriter, r *http.Request, c *call) { s.getKey(w, r, regionKV()) }
func (s *server) kvList(w http.ResponseWriter, r *http.Request, c *call) {
	s.listKeys(w, r, regionKV())
}
func (s *server) kvPut(w http.ResponseWriter, r *http.Request, c *call) {
	s.putKey(w, r, c, regionKV())
}
func (s *server) kvDelete(w http.ResponseWriter, r *http.Request, c *call) {
	s.deleteKey(w, r, c, regionKV())
}
func (s *server) tkvGet(w http.ResponseWriter, r *http.Request, c *call) { s.getKey(w, r, tenantKV(c)) }
func (s *server) tkvList(w http.ResponseWriter, r *http.Request, c *call) {
	s.listKeys(w, r, tenantKV(c))
}
func (s *server) tkvPut(w http.ResponseWriter, r *http.Request, c *call) {
	s.putKey(w, r, c, tenantKV(c))
}
func (s *server) tkvDelete(w http.ResponseWriter, r *http.Request, c *call) {
	s.deleteKey(w, r, c, tenantKV(c))
}

func (s *server) getKey(w http.ResponseWriter, r *http.Request, sp kvSpace) {
	key := r.PathValue("key")
	if !validKey(w, key) || !s.readConsistency(w, r) {
		return
	}
	var val []byte
	found := false
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		if v := sp.open(tx).Get(sp.bucket, []byte(key)); v != nil {
			val, found = append([]byte{}, v...), true
		}
		return nil
	})
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("key %q not found", key), "")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(val)
}

// maxListKeys caps one list answer; X-Outpost-Truncated says when more
// keys match (narrow the prefix to see them).
const maxListKeys = 1000

// drillKeys (api.DrillKeys, written by drill/load.go) are left out of a
// listing of the region's keys unless asked for (all=true, or a prefix
// inside drill/): a game day does not bury the infrastructure entries.
const drillKeys = api.DrillKeys

func (s *server) listKeys(w http.ResponseWriter, r *http.Request, sp kvSpace) {
	if !s.readConsistency(w, r) {
		return
	}
	prefix := r.URL.Query().Get("prefix")
	hideDrills := sp.tenant == "" && r.URL.Query().Get("all") != "true" && !strings.HasPrefix(prefix, drillKeys)
	out := []api.KVEntry{}
	truncated := false
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		sp.open(tx).ForEach(sp.bucket, []byte(prefix), func(k, v []byte) bool {
			if hideDrills && bytes.HasPrefix(k, []byte(drillKeys)) {
				return true
			}
			if len(out) == maxListKeys {
				truncated = true
				return false
			}
			out = append(out, api.KVEntry{Key: string(k), Size: len(v)})
			return true
		})
		return nil
	})
	if truncated {
		w.Header().Set("X-Outpost-Truncated", "true")
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) putKey(w http.ResponseWriter, r *http.Request, c *call, sp kvSpace) {
	key := r.PathValue("key")
	if !validKey(w, key) {
		return
	}
	val, err := io.ReadAll(http.MaxBytesReader(w, r.Body, raft.MaxValueLen+1))
	if err != nil || len(val) > raft.MaxValueLen {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value exceeds %d bytes", raft.MaxValueLen), "")
		return
	}
	s.writeKey(w, r, c, sp, raft.KVCommand{Op: raft.KVPut, Bucket: sp.bucket, Key: []byte(key), Value: val}, "put")
}

func (s *server) deleteKey(w http.ResponseWriter, r *http.Request, c *call, sp kvSpace) {
	key := r.PathValue("key")
	if !validKey(w, key) {
		return
	}
	s.writeKey(w, r, c, sp, raft.KVCommand{Op: raft.KVDelete, Bucket: sp.bucket, Key: []byte(key)}, "delete")
}

func (s *server) writeKey(w http.ResponseWriter, r *http.Request, c *call, sp kvSpace, kv raft.KVCommand, verb string) {
	inner, err := sp.encode(kv)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	ch := change{p: c.p, tenant: sp.tenant, action: sp.action + "." + verb, entity: "kv/" + string(kv.Key), redact: sp.redact}
	if res, ok := s.apply(w, r, ch, inner); ok {
		writeJSON(w, http.StatusOK, api.WriteResult{Index: res.Index})
	}
}
