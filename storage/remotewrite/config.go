package remotewrite

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config is telemetry.remote_write in the node's config file.
type Config struct {
	// Enabled turns remote_write on (default false: the local TSDB only).
	Enabled bool `yaml:"enabled"`
	// URL is the store's remote_write endpoint, http:// or https://
	// (Mimir: /api/v1/push, Thanos Receive: /api/v1/receive,
	// Prometheus: /api/v1/write).
	URL string `yaml:"url"`
	// Timeout bounds one request (default 30s, 100ms..5m).
	Timeout time.Duration `yaml:"timeout"`
	// MaxBytes bounds the queue on disk (default 256 MiB, at least
	// 64 KiB); when full, the oldest segment is dropped.
	MaxBytes int64 `yaml:"max_bytes"`
	// BatchSize is the most samples one request carries (default 2000,
	// 1..100000).
	BatchSize int `yaml:"batch_size"`
	// MinBackoff and MaxBackoff bound the wait between retries, doubling
	// from min to max (defaults 100ms and 10s).
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// OrgIDs maps a tenant ID to the X-Scope-OrgID header its requests
	// carry (the store's tenant); a tenant not listed gets its own ID when
	// OrgIDFromTenant is set, else no header.
	OrgIDs          map[string]string `yaml:"org_id_header"`
	OrgIDFromTenant bool              `yaml:"org_id_from_tenant"`
	// TLS to the store (https URLs only).
	TLS TLSConfig `yaml:"tls"`
	// BearerTokenFile holds a token sent as Authorization: Bearer; read
	// on every request, so it can be rotated in place.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// BasicAuth, instead of a bearer token.
	BasicAuth *BasicAuth `yaml:"basic_auth"`
}

// TLSConfig is the client side of TLS to the store.
type TLSConfig struct {
	// CAFile verifies the store's certificate (default: the system's).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, set together.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify does not verify the store's certificate (tests
	// only; default false).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// BasicAuth is HTTP basic authentication; the password is read from a
// file on every request.
type BasicAuth struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// Limits of the config's ranges.
const (
	DefaultMaxBytes = 256 << 20
	minMaxBytes     = 64 << 10
	maxBatchSize    = 100_000
	maxRetryAfter   = 5 * time.Minute
)

// Defaults fills unset fields.
func (c Config) Defaults() Config {
	c.Timeout = cmp.Or(c.Timeout, 30*time.Second)
	c.MaxBytes = cmp.Or(c.MaxBytes, DefaultMaxBytes)
	c.BatchSize = cmp.Or(c.BatchSize, 2000)
	c.MinBackoff = cmp.Or(c.MinBackoff, 100*time.Millisecond)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 10*time.Second)
	return c
}

// Validate rejects a config remote_write cannot run with, naming the
// field; zero values mean the defaults. With Enabled false only the
// ranges are checked, and the URL when set.
func (c Config) Validate() error {
	const p = "telemetry.remote_write."
	switch {
	case c.Enabled && c.URL == "":
		return errors.New(p + "url is required when remote_write is enabled (the store's endpoint, e.g. https://mimir.example/api/v1/push)")
	case c.Timeout < 0 || c.Timeout > 0 && (c.Timeout < 100*time.Millisecond || c.Timeout > 5*time.Minute):
		return fmt.Errorf(p+"timeout %v must be in [100ms, 5m]", c.Timeout)
	case c.MaxBytes < 0 || c.MaxBytes > 0 && c.MaxBytes < minMaxBytes:
		return fmt.Errorf(p+"max_bytes %d must be at least %d (64 KiB)", c.MaxBytes, minMaxBytes)
	case c.BatchSize < 0 || c.BatchSize > maxBatchSize:
		return fmt.Errorf(p+"batch_size %d must be in [1, %d]", c.BatchSize, maxBatchSize)
	case c.MinBackoff < 0 || c.MaxBackoff < 0:
		return fmt.Errorf(p+"min_backoff (%v) and max_backoff (%v) must not be negative", c.MinBackoff, c.MaxBackoff)
	case c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf(p+"min_backoff %v must not exceed max_backoff %v", c.MinBackoff, c.MaxBackoff)
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return errors.New(p + "tls.cert_file and tls.key_file must be set together")
	case c.BearerTokenFile != "" && c.BasicAuth != nil:
		return errors.New(p + "bearer_token_file and basic_auth: set one of them")
	case c.BasicAuth != nil && (c.BasicAuth.Username == "" || c.BasicAuth.PasswordFile == ""):
		return errors.New(p + "basic_auth needs username and password_file")
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf(p+"url %q: use an http:// or https:// URL with a host", c.URL)
		}
		if u.User != nil {
			return fmt.Errorf(p+"url %q carries credentials: use basic_auth with a password_file", u.Redacted())
		}
		if u.Scheme == "http" && (c.TLS != TLSConfig{}) {
			return fmt.Errorf(p+"tls is set but url %q is plain http: use https://", c.URL)
		}
	}
	for tenant, org := range c.OrgIDs {
		if tenant == "" || !validHeaderValue(org) {
			return fmt.Errorf(p+"org_id_header: tenant %q maps to %q; both must be non-empty and the org ID printable ASCII", tenant, org)
		}
	}
	return nil
}

// validHeaderValue: non-empty printable ASCII, so an org ID cannot split
// or smuggle a header.
func validHeaderValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// orgID is the X-Scope-OrgID for tenantID, "" for none.
func (c Config) orgID(tenantID string) string {
	if org, ok := c.OrgIDs[tenantID]; ok {
		return org
	}
	if c.OrgIDFromTenant {
		return tenantID
	}
	return ""
}
