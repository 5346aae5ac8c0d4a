package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/node/apitypes"
)

// apiError is a node's non-2xx answer: the message shown to the user,
// and the status and headers for commands that act on them (following
// the lease holder, retrying a failover).
type apiError struct {
	status int
	header http.Header
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// apiStatus is the HTTP status of an API refusal (0 for other errors)
// and its headers.
func apiStatus(err error) (int, http.Header) {
	var e *apiError
	if errors.As(err, &e) {
		return e.status, e.header
	}
	return 0, nil
}

type client struct {
	base   string
	token  string
	cookie string // a session instead of a token (login)
	http   *http.Client
	warn   io.Writer // where a retry is announced; nil says nothing
	// noRetry leaves 503s to the caller (dispatches create, whose id
	// makes even a write of unknown outcome safe to repeat).
	noRetry bool
}

func newClient(addr, token string) *client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &client{base: strings.TrimRight(addr, "/"), token: token, http: &http.Client{Timeout: 30 * time.Second}}
}

// do sends a request and decodes a JSON answer into out (unless out is a
// *[]byte, which receives the raw body). API errors come back with the
// server's message and hint.
func (c *client) do(ctx context.Context, method, path string, body []byte, out any) error {
	resp, err := c.open(ctx, c.http, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading answer from %s: %w", c.base, err)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", c.base, err)
	}
	return nil
}

// stream opens a long-lived GET (no overall timeout; ctx ends it) and
// returns its body, to be closed by the caller.
func (c *client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := c.open(ctx, hc, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// open sends a request and returns a 2xx response; anything else becomes
// an error worded for the user (an *apiError for an API refusal).
func (c *client) open(ctx context.Context, hc *http.Client, method, path string, body []byte) (*http.Response, error) {
	// A region between leaders answers 503 for about a second. Asked
	// again: a read, and a write the node says it did not append (503
	// with Retry-After: no leader). A write whose outcome is unknown
	// (503 without Retry-After) is not repeated: the user reads it back.
	deadline := time.Now().Add(retryFor)
	for said := false; ; said = true {
		resp, err := c.openOnce(ctx, hc, method, path, body)
		status, header := apiStatus(err)
		again := !c.noRetry && status == http.StatusServiceUnavailable && (method == "GET" || header.Get("Retry-After") != "")
		if !again || time.Now().After(deadline) {
			return resp, err
		}
		if !said && c.warn != nil {
			fmt.Fprintf(c.warn, "outpostctl: %s is unavailable for now (%s); retrying for up to %v\n", c.base, firstLine(err.Error()), retryFor)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(retryPause):
		}
	}
}

// How long and how often a 503 that may pass is asked again.
const (
	retryFor   = 15 * time.Second
	retryPause = 250 * time.Millisecond
)

func (c *client) openOnce(ctx context.Context, hc *http.Client, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("bad --addr %q: %w", c.base, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.cookie != "" {
		req.Header.Set("Cookie", c.cookie)
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return nil, fmt.Errorf("no node at %s (%v); start one with `outpost dev` or set OUTPOST_ADDR", c.base, ne.Err)
		}
		return nil, fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading answer from %s: %w", c.base, err)
	}
	e := &apiError{status: resp.StatusCode, header: resp.Header}
	var ae apitypes.Error
	if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
		e.msg = fmt.Sprintf("%s (HTTP %d)", ae.Error, resp.StatusCode)
		if ae.Hint != "" {
			e.msg += "\n  hint: " + ae.Hint
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" && c.cookie == "" && path != "/api/v1/login" {
			e.msg += "\n  OUTPOST_TOKEN is not set"
		}
		return nil, e
	}
	e.msg = fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	return nil, e
}

// send is do with in encoded as the JSON request body.
func (c *client) send(ctx context.Context, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding the request: %w", err)
	}
	return c.do(ctx, method, path, body, out)
}

func escapeKey(k string) string {
	parts := strings.Split(k, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
