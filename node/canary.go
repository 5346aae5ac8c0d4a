package node

import (
	"fmt"

	"github.com/outpost-mesh/outpost/storage"
)

// The canary is a known value wrapped by the region's master key, stored
// in the FSM: a node started with another master key finds it does not
// open and refuses to start.
var (
	canaryKey   = []byte("keys_canary")
	canaryPlain = []byte("outpost master key canary v1")
)

func (n *Node) checkCanary() error {
	var sealed []byte
	_ = n.store.View(func(tx *storage.Tx) error {
		sealed = append(sealed, tx.Get(storage.BucketSystem, canaryKey)...)
		return nil
	})
	if sealed == nil {
		return nil // a new node: the CA key file already proved the key
	}
	got, err := n.keys.Unwrap(string(storage.BucketSystem), string(canaryKey), sealed)
	if err != nil || string(got) != string(canaryPlain) {
		return fmt.Errorf("keys: the master key does not open this region's data (%v); start the node with the master key the region uses (keys.master_key_file or OUTPOST_MASTER_KEY)", err)
	}
	return nil
}

// PurposeOIDCSecret is the wrapped-file purpose of the OIDC client secret.
const PurposeOIDCSecret = "oidc_client_secret"
