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

type client struct {
	base  string
	token string
	http  *http.Client
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
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("bad --addr %q: %w", c.base, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("no node at %s (%v); start one with `outpost dev` or set OUTPOST_ADDR", c.base, ne.Err)
		}
		return fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading answer from %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var e apitypes.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg := fmt.Sprintf("%s (HTTP %d)", e.Error, resp.StatusCode)
			if e.Hint != "" {
				msg += "\n  hint: " + e.Hint
			}
			if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
				msg += "\n  OUTPOST_TOKEN is not set"
			}
			return errors.New(msg)
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
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
