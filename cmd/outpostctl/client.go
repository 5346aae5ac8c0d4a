package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
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

// worded puts an error in the user's terms: a node that does not answer
// is named with the other nodes of its region outpostctl knows of, and a
// refused token says how to get one (not which header to send).
func (c *client) worded(err error, path string) error {
	var na *api.NoAnswerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &na) && !errors.Is(err, context.Canceled):
		return &wordedError{msg: c.noAnswer(err), err: err}
	case api.StatusOf(err) == http.StatusUnauthorized && c.Session == "" && path != "/api/v1/login":
		return &wordedError{msg: c.unauthorized(err), err: err}
	}
	return err
}

// noAnswer says that the node at c.Addr did not answer, and what to try.
func (c *client) noAnswer(err error) string {
	var ne *net.OpError
	var msg string
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		msg = fmt.Sprintf("the node at %s did not answer in time", c.Addr)
	case errors.As(err, &ne) && ne.Op == "dial":
		msg = fmt.Sprintf("no node answers at %s (%v)", c.Addr, ne.Err)
	default:
		cause := err
		var ue *url.Error
		if errors.As(err, &ue) {
			cause = ue.Err
		}
		msg = fmt.Sprintf("no answer from the node at %s (%v)", c.Addr, cause)
	}
	known, ok := knownRegion(c.Addr)
	if !ok {
		return msg + "\n  point --addr (or OUTPOST_ADDR) at a node of your region, or start a dev region with `outpost dev`"
	}
	var others []string
	for _, n := range known.others {
		others = append(others, n.ID+" "+n.URL)
	}
	return fmt.Sprintf("%s\n  other nodes of region %s, as `outpostctl status` saw them %s ago: %s\n  try one: --addr %s (or set OUTPOST_ADDR)",
		msg, known.region, time.Since(known.seen).Round(time.Second), strings.Join(others, ", "), known.others[0].URL)
}

// unauthorized says the node wants credentials, and how to get them.
func (c *client) unauthorized(err error) string {
	reason := "HTTP 401"
	var se *api.StatusError
	if errors.As(err, &se) && se.Message != "" {
		reason += ": " + se.Message
	}
	if c.Token == "" {
		return fmt.Sprintf("the node at %s wants an API token (%s) and OUTPOST_TOKEN is not set\n"+
			"  run `outpostctl login USER` and export the token it prints, or set OUTPOST_TOKEN (or pass --token)", c.Addr, reason)
	}
	return fmt.Sprintf("the node at %s refused the API token (%s): it may be mistyped, expired or revoked\n"+
		"  run `outpostctl login USER` for a new one, or set OUTPOST_TOKEN (or --token) to a valid token", c.Addr, reason)
}

// wordedError is an error reworded for the command line; the API's error
// stays underneath for errors.Is and errors.As.
type wordedError struct {
	msg string
	err error
}

func (e *wordedError) Error() string { return e.msg }
func (e *wordedError) Unwrap() error { return e.err }

func escapeKey(k string) string { return api.EscapeKey(k) }
