package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/config"
)

// The remote_write 1.0 protocol's headers.
const (
	headerOrgID   = "X-Scope-OrgID"
	headerVersion = "X-Prometheus-Remote-Write-Version"
	version1      = "0.1.0"
	userAgent     = "outpost-remote-write"
	maxBodyLogged = 256
)

// client posts encoded requests. prometheus's own remote.Client does not
// fit: its RecoverableError keeps Retry-After unexported, and its headers
// are fixed per client while X-Scope-OrgID varies per tenant. TLS and
// credentials come from prometheus/common's HTTP client, which rereads
// the token and password files on each request.
type client struct {
	url     string
	hc      *http.Client
	timeout time.Duration
}

func newClient(cfg Config) (*client, error) {
	hcfg := config.HTTPClientConfig{
		BearerTokenFile: cfg.BearerTokenFile,
		TLSConfig: config.TLSConfig{CAFile: cfg.TLS.CAFile, CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile,
			InsecureSkipVerify: cfg.TLS.InsecureSkipVerify, MinVersion: config.TLSVersion(0x0303)}, // TLS 1.2
		EnableHTTP2: true,
	}
	if cfg.BasicAuth != nil {
		hcfg.BasicAuth = &config.BasicAuth{Username: cfg.BasicAuth.Username, PasswordFile: cfg.BasicAuth.PasswordFile}
	}
	if err := hcfg.Validate(); err != nil {
		return nil, fmt.Errorf("telemetry.remote_write: %w", err)
	}
	hc, err := config.NewClientFromConfig(hcfg, "outpost_remote_write", config.WithUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("telemetry.remote_write (tls or credentials files): %w", err)
	}
	return &client{url: cfg.URL, hc: hc, timeout: cfg.Timeout}, nil
}

// statusError is a non-2xx answer.
type statusError struct {
	code       int
	body       string // its first 256 bytes
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("remote_write store answered %d: %s", e.code, e.body)
}

// store posts one snappy-compressed WriteRequest; a network error is
// returned as is, a non-2xx answer as a *statusError.
func (c *client) store(ctx context.Context, orgID string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set(headerVersion, version1)
	if orgID != "" {
		req.Header.Set(headerOrgID, orgID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyLogged))
	return &statusError{code: resp.StatusCode, body: strings.ToValidUTF8(string(b), "?"), retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// retryAfter reads Retry-After, seconds or an HTTP date; 0 if absent or
// unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
