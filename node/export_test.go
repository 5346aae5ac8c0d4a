package node

import (
	"context"

	"github.com/outpost-mesh/outpost/storage"
)

// CreateAdmin runs the first-admin bootstrap on n again, so a test can
// watch an attempt the region refuses (its admin already exists).
func CreateAdmin(ctx context.Context, n *Node) error { return n.createAdmin(ctx) }

// StoreOf is n's state store, for tests that read records no route shows.
func StoreOf(n *Node) *storage.Store { return n.store }
