package nodes

import (
	"context"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// accepts reports whether the node at url accepts token as a region
// admin's.
func accepts(url, token string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return api.NewClient(url, token).Do(ctx, "GET", "/api/v1/region", nil, nil) == nil
}
