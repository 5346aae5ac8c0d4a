package remotewrite

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
)

// TestRetries: 5xx and 429 are retried until accepted (429's Retry-After
// honoured over a shorter backoff); another 4xx drops the batch, counted
// (rejected), and the queue moves on.
func TestRetries(t *testing.T) {
	cases := []struct {
		name      string
		respond   func(n int, w http.ResponseWriter) int
		requests  int     // the store sees this many: failed, then one per batch
		sent      float64 // samples accepted
		failKind  string
		failures  float64
		rejected  float64
		minSecond time.Duration // least time between the first two requests
	}{
		{"503 twice", func(n int, _ http.ResponseWriter) int {
			return map[bool]int{true: http.StatusServiceUnavailable, false: http.StatusOK}[n < 2]
		}, 4, 20, FailServer, 2, 0, 0},
		{"429 with Retry-After", func(n int, w http.ResponseWriter) int {
			if n == 0 {
				w.Header().Set("Retry-After", "1")
				return http.StatusTooManyRequests
			}
			return http.StatusOK
		}, 3, 20, FailThrottle, 1, 0, 900 * time.Millisecond},
		{"400 drops", func(n int, _ http.ResponseWriter) int {
			return map[bool]int{true: http.StatusBadRequest, false: http.StatusOK}[n == 0]
		}, 2, 10, FailRejected, 1, 10, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := newFakeStore(t)
			store.setRespond(func(n int, _ *prompb.WriteRequest, w http.ResponseWriter) int { return tc.respond(n, w) })
			cfg := testConfig(store.url())
			cfg.BatchSize = 10 // one request per batch
			q := openQueue(t, t.TempDir(), cfg)
			q.Enqueue("t1", batch("t1", 1, 10))
			q.Enqueue("t1", batch("t1", 2, 10))
			waitFor(t, "the queue to drain", 10*time.Second, func() bool { return pending(q) == 0 })
			reqs := store.requests()
			if len(reqs) != tc.requests {
				t.Errorf("store saw %d requests, want %d", len(reqs), tc.requests)
			}
			if got := testutil.ToFloat64(q.m.sent); got != tc.sent {
				t.Errorf("samples sent %v, want %v", got, tc.sent)
			}
			if got := failures(q, tc.failKind); got != tc.failures {
				t.Errorf("failures{kind=%q} = %v, want %v", tc.failKind, got, tc.failures)
			}
			if got := dropped(q, DropRejected); got != tc.rejected {
				t.Errorf("dropped{reason=rejected} = %v, want %v", got, tc.rejected)
			}
			if len(reqs) >= 2 && reqs[1].at.Sub(reqs[0].at) < tc.minSecond {
				t.Errorf("retried after %v, want at least %v", reqs[1].at.Sub(reqs[0].at), tc.minSecond)
			}
			if testutil.ToFloat64(q.m.lastSuccess) == 0 {
				t.Error("last success timestamp not set")
			}
		})
	}
}

// TestOrgIDPerTenant: each tenant's requests carry its own X-Scope-OrgID
// (mapped, or its ID), never another tenant's samples.
func TestOrgIDPerTenant(t *testing.T) {
	cases := []struct {
		name       string
		fromTenant bool
		want       map[string]string // tenant -> org ID header
	}{
		{"mapped, others their ID", true, map[string]string{"t1": "org-one", "t2": "t2"}},
		{"mapped, others none", false, map[string]string{"t1": "org-one", "t2": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := newFakeStore(t)
			cfg := testConfig(store.url())
			cfg.OrgIDs = map[string]string{"t1": "org-one"}
			cfg.OrgIDFromTenant = tc.fromTenant
			q := openQueue(t, t.TempDir(), cfg)
			q.Enqueue("t1", batch("t1", 1, 5))
			q.Enqueue("t2", batch("t2", 2, 5))
			q.Enqueue("t1", batch("t1", 3, 5))
			waitFor(t, "the queue to drain", 10*time.Second, func() bool { return pending(q) == 0 })
			seen := map[string]bool{}
			for _, r := range store.requests() {
				for _, ts := range r.series {
					var tenant string
					for _, l := range ts.Labels {
						if l.Name == "tenant" {
							tenant = l.Value
						}
					}
					seen[tenant] = true
					if r.orgID != tc.want[tenant] {
						t.Errorf("a series of %s went with X-Scope-OrgID %q, want %q", tenant, r.orgID, tc.want[tenant])
					}
				}
			}
			if !seen["t1"] || !seen["t2"] {
				t.Errorf("tenants seen %v, want t1 and t2", seen)
			}
		})
	}
}

// TestCredentials: a bearer token file or basic auth goes with every
// request.
func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	token, pw := filepath.Join(dir, "token"), filepath.Join(dir, "pw")
	if err := os.WriteFile(token, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte("pa55"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"bearer", func(c *Config) { c.BearerTokenFile = token }, "Bearer s3cret-token"},
		{"basic", func(c *Config) { c.BasicAuth = &BasicAuth{Username: "u", PasswordFile: pw} }, "Basic dTpwYTU1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan string, 10)
			store := newFakeStore(t)
			inner := store.srv.Config.Handler
			store.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- r.Header.Get("Authorization")
				inner.ServeHTTP(w, r)
			})
			cfg := testConfig(store.url())
			tc.set(&cfg)
			q := openQueue(t, t.TempDir(), cfg)
			q.Enqueue("t1", batch("t1", 1, 5))
			select {
			case a := <-got:
				if a != tc.want {
					t.Errorf("Authorization %q, want %q", a, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no request")
			}
		})
	}
}

// TestRejectedBodyLogged: the store's answer to a refused batch is
// logged, cut to 256 bytes.
func TestRejectedBodyLogged(t *testing.T) {
	var logs syncBuffer
	store := newFakeStore(t)
	store.setRespond(func(n int, _ *prompb.WriteRequest, w http.ResponseWriter) int {
		return http.StatusBadRequest
	})
	q, err := Open(t.TempDir(), testConfig(store.url()), slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	q.Enqueue("t1", batch("t1", 1, 5))
	waitFor(t, "the queue to drain", 10*time.Second, func() bool { return pending(q) == 0 })
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "status=400") || !strings.Contains(logs.String(), "refused by the fake store") {
		t.Errorf("log does not show the status and body: %s", logs.String())
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-4", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.v, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// TestConfigValidate: bad configs are refused naming the field in config
// terms.
func TestConfigValidate(t *testing.T) {
	ok := Config{Enabled: true, URL: "https://mimir.example/api/v1/push"}
	cases := []struct {
		name  string
		set   func(*Config)
		field string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"disabled without url", func(c *Config) { c.Enabled, c.URL = false, "" }, ""},
		{"missing url", func(c *Config) { c.URL = "" }, "telemetry.remote_write.url"},
		{"not a url", func(c *Config) { c.URL = "mimir:9009" }, "telemetry.remote_write.url"},
		{"credentials in url", func(c *Config) { c.URL = "https://u:p@mimir.example/" }, "telemetry.remote_write.url"},
		{"tls over http", func(c *Config) { c.URL = "http://mimir.example/"; c.TLS.CAFile = "ca.pem" }, "telemetry.remote_write.tls"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, "telemetry.remote_write.tls.cert_file"},
		{"negative max_bytes", func(c *Config) { c.MaxBytes = -1 }, "telemetry.remote_write.max_bytes"},
		{"tiny max_bytes", func(c *Config) { c.MaxBytes = 1000 }, "telemetry.remote_write.max_bytes"},
		{"timeout", func(c *Config) { c.Timeout = time.Hour }, "telemetry.remote_write.timeout"},
		{"batch_size", func(c *Config) { c.BatchSize = -5 }, "telemetry.remote_write.batch_size"},
		{"backoff order", func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Minute, time.Second }, "telemetry.remote_write.min_backoff"},
		{"two credentials", func(c *Config) { c.BearerTokenFile = "t"; c.BasicAuth = &BasicAuth{Username: "u", PasswordFile: "p"} }, "telemetry.remote_write.bearer_token_file"},
		{"basic auth without password", func(c *Config) { c.BasicAuth = &BasicAuth{Username: "u"} }, "telemetry.remote_write.basic_auth"},
		{"org id with newline", func(c *Config) { c.OrgIDs = map[string]string{"t1": "a\r\nX-Evil: 1"} }, "telemetry.remote_write.org_id_header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.set(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// FuzzDecodeRecord: hostile bytes in a segment never panic the decoder
// (nor the request decoder behind it) nor make it allocate beyond its
// bounds; what it accepts re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	good := appendRecord(nil, record{tenant: "t1", samples: 2, data: []byte("\x04\x0cabcd")})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(append(append([]byte{}, good...), good...))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// The same bytes as a payload under a valid header, so the
		// fuzzer reaches the fields behind the checksum.
		if len(b) > 0 && len(b) <= maxRecordBytes {
			framed := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
			framed = binary.BigEndian.AppendUint32(framed, crc32.Checksum(b, castagnoli))
			checkDecode(t, append(framed, b...))
		}
	})
}

func checkDecode(t *testing.T, b []byte) {
	r, n, err := decodeRecord(b)
	if err != nil {
		return
	}
	if n > len(b) || n <= headerLen {
		t.Fatalf("frame length %d of %d bytes", n, len(b))
	}
	if re := appendRecord(nil, r); !bytes.Equal(re, b[:n]) {
		t.Fatalf("re-encoded %x, read %x", re, b[:n])
	}
	_, _ = decodeData(r.data)
}

// syncBuffer is a bytes.Buffer safe for the sender's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
