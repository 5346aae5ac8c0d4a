package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// client is outpostctl's use of the API client: its requests, with
// errors worded for the command line.
type client struct {
	*api.Client
}

// newClient returns a client of the node at addr that asks again, for a
// while, what a region between leaders refuses and is safe to repeat.
func newClient(addr, token string) *client {
	c := api.NewClient(addr, token)
	c.Timeout = 30 * time.Second
	c.Retry = api.SafeRetry
	return &client{c}
}

// warnTo makes the client say on w when it retries.
func (c *client) warnTo(w io.Writer) {
	c.OnRetry = func(err error, within time.Duration) {
		fmt.Fprintf(w, "outpostctl: %s is unavailable for now (%s); retrying for up to %v\n", c.Addr, firstLine(err.Error()), within)
	}
}

// noRetry leaves 503s to the caller (dispatches create, whose id makes
// even a write of unknown outcome safe to repeat).
func (c *client) noRetry() { c.Retry = api.Retry{} }

// apiStatus is the HTTP status of an API refusal (0 for other errors)
// and its headers.
func apiStatus(err error) (int, http.Header) { return api.StatusOf(err), api.HeaderOf(err) }

// do sends a request and decodes a JSON answer into out (unless out is a
// *[]byte, which receives the raw body). API errors come back with the
// server's message and hint.
func (c *client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var in any
	if body != nil {
		in = body
	}
	return c.worded(c.Do(ctx, method, path, in, out), path)
}

// send is do with in encoded as the JSON request body.
func (c *client) send(ctx context.Context, method, path string, in, out any) error {
	return c.worded(c.Do(ctx, method, path, in, out), path)
}

// stream opens a long-lived GET (no overall timeout; ctx ends it) and
// returns its body, to be closed by the caller.
func (c *client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	body, err := c.Stream(ctx, path)
	return body, c.worded(err, path)
}

// worded adds what the user can do to an error: start a node or point
// at one, or set a token.
func (c *client) worded(err error, path string) error {
	var ne *net.OpError
	var na *api.NoAnswerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &na) && errors.As(err, &ne):
		return fmt.Errorf("no node at %s (%v); start one with `outpost dev` or set OUTPOST_ADDR", c.Addr, ne.Err)
	case api.StatusOf(err) == http.StatusUnauthorized && c.Token == "" && c.Session == "" && path != "/api/v1/login":
		return fmt.Errorf("%w\n  OUTPOST_TOKEN is not set", err)
	}
	return err
}

func escapeKey(k string) string { return api.EscapeKey(k) }
