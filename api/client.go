package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SessionCookie is the name of the cookie a login sets.
const SessionCookie = "outpost_session"

// Client is the one Go client of the HTTP API: outpostctl, drills, dev
// mode, benchmarks and tests use it. It speaks to one node; a caller that
// talks to several makes one Client per node (At).
//
// A Client is safe for concurrent use once configured, except Login,
// which sets Session.
type Client struct {
	// Addr is the node's base URL, e.g. http://127.0.0.1:8500.
	Addr string
	// Token is sent as a bearer token; Session (a Cookie header value, set
	// by Login) is sent instead when set.
	Token, Session string
	// HTTP sends the requests; nil uses a client with no overall timeout
	// (event streams stay open), so bound calls with Timeout or ctx.
	HTTP *http.Client
	// Timeout bounds each attempt of Do (not Stream); 0 leaves it to ctx.
	Timeout time.Duration
	// Retry says which refusals are asked again; the zero value asks
	// nothing again.
	Retry Retry
	// OnRetry, if set, is told the first time a request is asked again,
	// with the error and how long retries go on.
	OnRetry func(err error, within time.Duration)
}

// Retry is a client's policy for failures that pass: a region between
// leaders answers 503 for about a second, a busy node 429.
type Retry struct {
	// For is how long a request is asked again; 0 disables retries.
	For time.Duration
	// Pause is the first wait between attempts; it doubles up to MaxPause
	// (MaxPause 0 keeps it constant).
	Pause, MaxPause time.Duration
	// Idempotent says every request the caller sends is safe to repeat
	// (creating what exists answers 409, which it accepts), so a request
	// whose answer was lost, a 429 and a 503 of unknown outcome are asked
	// again too. Without it only a read's 503 and a write's 503 with
	// Retry-After (the node says it appended nothing) are: a write whose
	// outcome is unknown is left to the caller to read back.
	Idempotent bool
}

// SafeRetry is the retry a user-facing command wants: 15 s of what is
// certain to be safe to ask again.
var SafeRetry = Retry{For: 15 * time.Second, Pause: 250 * time.Millisecond}

// NewClient returns a client of the node at addr ("host:port" or a URL)
// with token, and no retries.
func NewClient(addr, token string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Addr: strings.TrimRight(addr, "/"), Token: token}
}

// At returns a copy of c that speaks to the node at addr.
func (c *Client) At(addr string) *Client {
	cp := *c
	cp.Addr = NewClient(addr, "").Addr
	return &cp
}

// StatusError is a node's non-2xx answer.
type StatusError struct {
	Method, Path string
	Status       int
	Header       http.Header
	// Message and Hint are the API's error and hint; when the answer was
	// not the API's error document, Message is its text and Raw is set.
	Message, Hint string
	Raw           bool
}

func (e *StatusError) Error() string {
	if e.Raw {
		return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Message)
	}
	s := fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	if e.Hint != "" {
		s += "\n  hint: " + e.Hint
	}
	return s
}

// StatusOf is the HTTP status of an API refusal, or 0 for any other error.
func StatusOf(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// HeaderOf is the headers of an API refusal, or nil.
func HeaderOf(err error) http.Header {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Header
	}
	return nil
}

// maxAnswer bounds an answer read into memory.
const maxAnswer = 64 << 20

// Do sends method path with in as the body (nil, raw []byte, or a value
// encoded as JSON) and decodes a 2xx answer into out (nil discards it, a
// *[]byte receives the raw body, anything else is decoded as JSON).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	body, isJSON, err := encodeBody(in)
	if err != nil {
		return err
	}
	resp, cancel, err := c.open(ctx, c.Timeout, method, path, body, isJSON)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s%s: %w", method, c.Addr, path, err)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from %s%s: %w", c.Addr, path, err)
	}
	return nil
}

// Stream opens a long-lived GET (no Timeout; ctx ends it) and returns its
// body, for the caller to close.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, _, err := c.open(ctx, 0, "GET", path, nil, false)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Login logs in with a password and keeps the session in c.Session.
func (c *Client) Login(ctx context.Context, username, password string) error {
	body, _, _ := encodeBody(Login{Username: username, Password: password})
	resp, cancel, err := c.open(ctx, c.Timeout, "POST", "/api/v1/login", body, true)
	if err != nil {
		return err
	}
	defer cancel()
	resp.Body.Close()
	var cookies []string
	for _, ck := range resp.Cookies() {
		cookies = append(cookies, ck.Name+"="+ck.Value)
	}
	if len(cookies) == 0 {
		return fmt.Errorf("the node at %s set no session on login; is it an Outpost node?", c.Addr)
	}
	c.Session = strings.Join(cookies, "; ")
	return nil
}

func encodeBody(in any) (body []byte, isJSON bool, err error) {
	switch v := in.(type) {
	case nil:
		return nil, false, nil
	case []byte:
		return v, false, nil
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, false, fmt.Errorf("encoding the request: %w", err)
	}
	return b, true, nil
}

// open sends a request, asking again what the retry policy allows, and
// returns a 2xx response and the function that releases its context.
func (c *Client) open(ctx context.Context, timeout time.Duration, method, path string, body []byte, isJSON bool) (*http.Response, context.CancelFunc, error) {
	deadline := time.Now().Add(c.Retry.For)
	pause := c.Retry.Pause
	var last error // the last answer, kept when ctx ends an attempt
	for told := false; ; told = true {
		resp, cancel, err := c.openOnce(ctx, timeout, method, path, body, isJSON)
		if err != nil && last != nil && ctx.Err() != nil && StatusOf(err) == 0 {
			// The caller's time ran out during a retry: the node's last
			// answer says more than the cancelled attempt.
			err = last
		}
		if err == nil || !c.again(ctx, method, err) || time.Now().After(deadline) {
			return resp, cancel, err
		}
		if StatusOf(err) != 0 {
			last = err
		}
		if !told && c.OnRetry != nil {
			c.OnRetry(err, c.Retry.For)
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(pause):
		}
		if c.Retry.MaxPause > pause {
			pause = min(2*pause, c.Retry.MaxPause)
		}
	}
}

// again reports whether a failed request may be asked again.
func (c *Client) again(ctx context.Context, method string, err error) bool {
	if c.Retry.For <= 0 || ctx.Err() != nil {
		return false
	}
	var se *StatusError
	if !errors.As(err, &se) {
		// No answer: safe to repeat only for an idempotent caller (others
		// say so at once: the node is probably down).
		return c.Retry.Idempotent
	}
	switch se.Status {
	case http.StatusServiceUnavailable:
		return c.Retry.Idempotent || method == "GET" || se.Header.Get("Retry-After") != ""
	case http.StatusTooManyRequests:
		return c.Retry.Idempotent
	}
	return false
}

func (c *Client) openOnce(ctx context.Context, timeout time.Duration, method, path string, body []byte, isJSON bool) (*http.Response, context.CancelFunc, error) {
	cancel := context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Addr+path, rd)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("bad node address %q: %w", c.Addr, err)
	}
	switch {
	case c.Session != "":
		req.Header.Set("Cookie", c.Session)
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, nil, &NoAnswerError{Method: method, URL: c.Addr + path, Err: err}
	}
	if resp.StatusCode/100 == 2 {
		return resp, cancel, nil
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer of %s %s: %w", method, c.Addr+path, err)
	}
	se := &StatusError{Method: method, Path: path, Status: resp.StatusCode, Header: resp.Header}
	var ae Error
	if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
		se.Message, se.Hint = ae.Error, ae.Hint
	} else {
		se.Message, se.Raw = strings.TrimSpace(string(data)), true
	}
	return nil, nil, se
}

// NoAnswerError is a request that got no HTTP answer: the node is down,
// unreachable, or the connection broke.
type NoAnswerError struct {
	Method, URL string
	Err         error
}

func (e *NoAnswerError) Error() string { return e.Method + " " + e.URL + ": " + e.Err.Error() }
func (e *NoAnswerError) Unwrap() error { return e.Err }

// EscapeKey escapes each segment of a KV key for a URL path.
func EscapeKey(k string) string {
	parts := strings.Split(k, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
