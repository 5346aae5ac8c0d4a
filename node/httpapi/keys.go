package httpapi

import (
	"net/http"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node/peering"

	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Keys is the node's KeyProtector as the API uses it.
type Keys interface {
	KeyID() string
	PreviousKeyID() string
	NeedsRewrap(sealed []byte) bool
	Rewrap(bucket, key string, sealed []byte) ([]byte, error)
	Wrap(bucket, key string, plaintext []byte) ([]byte, error)
}

// wrappedSecrets are the FSM records sealed by the master key.
var wrappedSecrets = []struct{ bucket, key []byte }{
	{storage.BucketSystem, []byte("keys_canary")},
}

func (s *server) keyStatus() (api.KeyStatus, [][3][]byte) {
	st := api.KeyStatus{Node: s.cfg.Region.NodeID(), KeyID: s.cfg.Keys.KeyID(), PreviousKeyID: s.cfg.Keys.PreviousKeyID()}
	var stale [][3][]byte
	_ = s.cfg.Store.View(func(tx *storage.Tx) error {
		for _, w := range wrappedSecrets {
			v := tx.Get(w.bucket, w.key)
			if v == nil {
				continue
			}
			st.Secrets++
			if s.cfg.Keys.NeedsRewrap(v) {
				st.OnPrevious++
				stale = append(stale, [3][]byte{w.bucket, w.key, append([]byte(nil), v...)})
			}
		}
		// Every federation peer's shared secret.
		for name, v := range (peering.Reader{Tx: tx}).Secrets() {
			st.Secrets++
			if s.cfg.Keys.NeedsRewrap(v) {
				st.OnPrevious++
				stale = append(stale, [3][]byte{peering.BucketSecrets, []byte(name), v})
			}
		}
		return nil
	})
	return st, stale
}

func (s *server) keysGet(w http.ResponseWriter, r *http.Request, c *call) {
	st, _ := s.keyStatus()
	writeJSON(w, http.StatusOK, st)
}

// keysRotate re-wraps every stored secret still under the previous master
// key with the current one, in one audited entry.
func (s *server) keysRotate(w http.ResponseWriter, r *http.Request, c *call) {
	st, stale := s.keyStatus()
	if len(stale) == 0 {
		writeJSON(w, http.StatusOK, st)
		return
	}
	// Each secret is written back only if it is still the value read
	// (a peer removed or re-added meanwhile keeps what it has now), in
	// entries of at most raft.MaxBatchOps operations. A secret that
	// changed is left for the next rotate, which finds it if it is still
	// on the previous key.
	var batches []raft.Batch
	var b raft.Batch
	for _, x := range stale {
		nv, err := s.cfg.Keys.Rewrap(string(x[0]), string(x[1]), x[2])
		if err != nil {
			writeError(w, http.StatusInternalServerError, "re-wrapping "+string(x[0])+"/"+string(x[1])+": "+err.Error(), "check that keys.previous_master_key_file holds the key being rotated away from")
			return
		}
		if len(b)+2 > raft.MaxBatchOps {
			batches, b = append(batches, b), nil
		}
		b = append(b, raft.BatchOp{KV: raft.KVCommand{Op: raft.KVExpect, Bucket: x[0], Key: x[1], Value: x[2]}, Redact: true},
			raft.BatchOp{KV: raft.KVCommand{Op: raft.KVPut, Bucket: x[0], Key: x[1], Value: nv}, Redact: true})
	}
	batches = append(batches, b)
	rewrapped := 0
	for _, b := range batches {
		res, ok := s.apply(w, r, change{p: c.p, action: "keys.rotate", entity: "keys/" + st.KeyID,
			detail: map[string]any{"from": st.PreviousKeyID, "to": st.KeyID, "secrets": len(b) / 2}}, batch(b))
		if !ok {
			return
		}
		if string(res.Value) == "1" {
			rewrapped += len(b) / 2
		}
	}
	after, _ := s.keyStatus()
	after.Rewrapped = rewrapped
	writeJSON(w, http.StatusOK, after)
}
