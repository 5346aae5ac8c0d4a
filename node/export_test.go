package node

import "context"

// CreateAdmin runs the first-admin bootstrap on n again, so a test can
// watch an attempt the region refuses (its admin already exists).
func CreateAdmin(ctx context.Context, n *Node) error { return n.createAdmin(ctx) }
