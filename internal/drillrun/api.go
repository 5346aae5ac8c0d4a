package drillrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/node/apitypes"
)

// api sends the drill's requests. The HTTP client has no timeout of its
// own (the event streams stay open); every call sets its own.
type api struct {
	hc    *http.Client
	token string
}

// statusError is a non-2xx answer from a node.
type statusError struct {
	URL    string
	Status int
	Header http.Header
	Msg    string // the API's error and hint
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.URL, e.Status, e.Msg)
}

// statusOf is the HTTP status of an API refusal, or 0 for any other error.
func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// call sends method url with in as the body (JSON, or raw when in is a
// []byte) and decodes a JSON answer into out (raw bytes into a *[]byte).
func (a *api) call(ctx context.Context, timeout time.Duration, method, url string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	isJSON := false
	switch v := in.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
		body, isJSON = bytes.NewReader(b), true
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	a.authorize(req)
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(data))
		var e apitypes.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
			if e.Hint != "" {
				msg += " (hint: " + e.Hint + ")"
			}
		}
		return &statusError{URL: url, Status: resp.StatusCode, Header: resp.Header, Msg: msg}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", url, err)
	}
	return nil
}

func (a *api) authorize(req *http.Request) {
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
}
