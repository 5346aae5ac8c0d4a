package drill

import (
	"context"
	"io"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// caller sends the drill's requests to whichever node a step names,
// through the API client. Its HTTP client has no timeout of its own (the
// event streams stay open); every call sets its own, and nothing is
// retried: the drill decides what a refusal means.
type caller struct {
	c *api.Client
}

// call sends method base+path with in as the body (JSON, or raw when in
// is a []byte) and decodes a JSON answer into out (raw bytes into a
// *[]byte).
func (a *caller) call(ctx context.Context, timeout time.Duration, method, base, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return a.c.At(base).Do(ctx, method, path, in, out)
}

// stream opens the long-lived GET base+path; ctx ends it.
func (a *caller) stream(ctx context.Context, base, path string) (io.ReadCloser, error) {
	return a.c.At(base).Stream(ctx, path)
}

// statusOf is the HTTP status of an API refusal, or 0 for any other error.
func statusOf(err error) int { return api.StatusOf(err) }
