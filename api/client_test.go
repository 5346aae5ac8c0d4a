package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// idempotent is the policy of a caller whose every request is safe to
// repeat (the dev setup), with short pauses for the test.
var idempotent = Retry{For: time.Minute, Pause: time.Millisecond, MaxPause: 10 * time.Millisecond, Idempotent: true}

// TestIdempotentRetries: an idempotent caller asks again after no
// answer, a 503 (no leader, or a write whose outcome is unknown) and a
// 429; a 409 (it exists already, from the attempt whose answer was lost)
// comes back for the caller to accept; any other refusal ends at once.
func TestIdempotentRetries(t *testing.T) {
	tests := []struct {
		name       string
		answers    []int // -1: the connection drops without an answer
		wantCalls  int32
		wantStatus int // of the error; 0 for success
	}{
		{"transient then created", []int{503, -1, 429, 201}, 4, 0},
		{"outcome unknown then exists", []int{503, 409}, 2, 409},
		{"refusal is final", []int{503, 400, 201}, 2, 400},
		{"unauthorized is final", []int{401, 201}, 1, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := calls.Add(1) - 1
				code := tt.answers[min(int(i), len(tt.answers)-1)]
				if code == -1 {
					c, _, _ := w.(http.Hijacker).Hijack()
					c.Close()
					return
				}
				w.WriteHeader(code)
				fmt.Fprintf(w, `{"error":"answer %d"}`, code)
			}))
			defer srv.Close()
			c := NewClient(srv.URL, "tok")
			c.Retry = idempotent
			told := 0
			c.OnRetry = func(error, time.Duration) { told++ }
			err := c.Do(context.Background(), "POST", "/api/v1/users", struct{}{}, nil)
			if StatusOf(err) != tt.wantStatus || (err == nil) != (tt.wantStatus == 0) || calls.Load() != tt.wantCalls {
				t.Fatalf("err %v (status %d) after %d calls; want status %d after %d calls", err, StatusOf(err), calls.Load(), tt.wantStatus, tt.wantCalls)
			}
			if want := min(1, int(tt.wantCalls)-1); told != want {
				t.Errorf("told of retries %d times, want %d", told, want)
			}
		})
	}
}

// TestRetryGivesUp: a region that stays unavailable ends the request when
// its context does, with the last answer.
func TestRetryGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		fmt.Fprint(w, `{"error":"no leader","hint":"wait for an election"}`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c := NewClient(srv.URL, "")
	c.Retry = idempotent
	err := c.Do(ctx, "POST", "/api/v1/login", nil, nil)
	if StatusOf(err) != 503 || !strings.Contains(err.Error(), "no leader (HTTP 503)") || !strings.Contains(err.Error(), "hint: wait for an election") {
		t.Fatalf("got %v, want the last answer with its hint", err)
	}
}

// TestNoRetryByDefault: the zero policy asks nothing again, and a node
// that does not answer is reported as such.
func TestNoRetryByDefault(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(503)
	}))
	c := NewClient(srv.URL, "")
	if err := c.Do(context.Background(), "GET", "/x", nil, nil); StatusOf(err) != 503 || calls.Load() != 1 {
		t.Fatalf("err %v after %d calls; want one 503", err, calls.Load())
	}
	srv.Close()
	var na *NoAnswerError
	if err := c.Do(context.Background(), "GET", "/x", nil, nil); !errors.As(err, &na) {
		t.Fatalf("got %v from a closed server, want a NoAnswerError", err)
	}
}

// TestLoginKeepsTheSession: Login sends the account's password as JSON
// and later requests carry the session instead of the token.
func TestLoginKeepsTheSession(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/login":
			if r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("login Content-Type %q", r.Header.Get("Content-Type"))
			}
			http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "s1"})
		case "/api/v1/whoami":
			if ck, err := r.Cookie(SessionCookie); err != nil || ck.Value != "s1" || r.Header.Get("Authorization") != "" {
				w.WriteHeader(401)
				return
			}
			fmt.Fprint(w, `{"actor":"dev"}`)
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL, "tok")
	if err := c.Login(context.Background(), "dev", "pw"); err != nil {
		t.Fatal(err)
	}
	var me WhoAmI
	if err := c.Do(context.Background(), "GET", "/api/v1/whoami", nil, &me); err != nil || me.Actor != "dev" {
		t.Fatalf("whoami on the session: %+v, %v", me, err)
	}
}
