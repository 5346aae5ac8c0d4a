package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestClientRetriesWhatMayPass: a 503 from a region between leaders is
// asked again for a read, and for a write the node says it did not
// append (Retry-After); a write whose outcome is unknown (503 without
// Retry-After) is not repeated, and other refusals are final.
func TestClientRetriesWhatMayPass(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		retryAfter bool
		failures   int32 // 503s before the 200
		wantCalls  int32
		wantErr    bool
	}{
		{"read through an election", "GET", false, 2, 3, false},
		{"write not appended", "POST", true, 2, 3, false},
		{"write outcome unknown", "POST", false, 2, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				if r.Method == "POST" {
					if b, _ := io.ReadAll(r.Body); string(b) != `{"k":"v"}` {
						t.Errorf("call %d: body %q: a retry must send the body again", n, b)
					}
				}
				if n <= tt.failures {
					if tt.retryAfter {
						w.Header().Set("Retry-After", "1")
					}
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = w.Write([]byte(`{"error":"no leader"}`))
					return
				}
				_, _ = w.Write([]byte(`{}`))
			}))
			defer srv.Close()
			var warn bytes.Buffer
			c := newClient(srv.URL, "tok")
			c.warnTo(&warn)
			var body []byte
			if tt.method == "POST" {
				body = []byte(`{"k":"v"}`)
			}
			err := c.do(context.Background(), tt.method, "/api/v1/x", body, nil)
			if (err != nil) != tt.wantErr || calls.Load() != tt.wantCalls {
				t.Fatalf("err %v after %d calls; want error %v after %d", err, calls.Load(), tt.wantErr, tt.wantCalls)
			}
			if retried := calls.Load() > 1; retried != strings.Contains(warn.String(), "retrying") {
				t.Errorf("retried %v, but the user was told %q", retried, warn.String())
			}
		})
	}
}
