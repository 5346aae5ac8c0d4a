package devregion

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/node"
)

// TestSetupClientRetries: the dev setup asks again after no answer, a
// 503 (no leader, or a write whose outcome is unknown) and a 429, accepts
// the codes the caller names (409: it exists already, from the attempt
// whose answer was lost), and stops at once on any other refusal.
func TestSetupClientRetries(t *testing.T) {
	tests := []struct {
		name      string
		answers   []int // -1: the connection drops without an answer
		ok        []int
		wantCalls int32
		wantCode  int
		wantErr   bool
	}{
		{"transient then created", []int{503, -1, 429, 201}, nil, 4, 201, false},
		{"outcome unknown then exists", []int{503, 409}, []int{409}, 2, 409, false},
		{"conflict not accepted", []int{409}, nil, 1, 409, true},
		{"refusal is final", []int{503, 400, 201}, nil, 2, 400, true},
		{"unauthorized is final", []int{401, 201}, nil, 1, 401, true},
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
			s := &setupClient{url: srv.URL, say: func(string, ...any) {}}
			code, err := s.call(context.Background(), "POST", "/api/v1/users", `{}`, nil, tt.ok...)
			if (err != nil) != tt.wantErr || code != tt.wantCode || calls.Load() != tt.wantCalls {
				t.Fatalf("code %d err %v after %d calls; want code %d, error %v, %d calls", code, err, calls.Load(), tt.wantCode, tt.wantErr, tt.wantCalls)
			}
		})
	}
}

// TestSetupClientGivesUp: a region that stays unavailable ends the setup
// when its context does, with the last answer and what to do.
func TestSetupClientGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
		fmt.Fprint(w, `{"error":"no leader"}`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s := &setupClient{url: srv.URL, say: func(string, ...any) {}}
	_, err := s.call(ctx, "POST", "/api/v1/login", `{}`, nil)
	if err == nil || !strings.Contains(err.Error(), "no leader") || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("got %v, want the last answer and that the setup gave up", err)
	}
}

// TestStartThroughLeadershipChanges: a three-node dev region with an
// agent finishes its setup (dev account, tenant, login, bootstrap token,
// enrollment) while leadership moves between the nodes every few hundred
// milliseconds. Setup writes that landed on a leadership change ended
// `outpost dev --nodes 3` (503 write outcome unknown).
func TestStartThroughLeadershipChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node region; run without -short")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var moved atomic.Int32
	opts := Options{HTTP: "127.0.0.1:0", DataDir: t.TempDir(), Nodes: 3, Agents: 1,
		beforeSetup: func(d *Region) {
			transfer := func() {
				var leader *node.Node
				d.mu.Lock()
				for _, n := range d.nodes {
					if n != nil && n.Region().IsLeader() {
						leader = n
					}
				}
				d.mu.Unlock()
				err := errors.New("no leader")
				if leader != nil {
					err = leader.Region().TransferLeadership()
				}
				if err == nil {
					moved.Add(1)
				}
			}
			// One transfer before the setup starts, so that its first
			// writes meet an election however fast the machine is.
			for deadline := time.Now().Add(30 * time.Second); moved.Load() == 0 && time.Now().Before(deadline); {
				transfer()
				time.Sleep(20 * time.Millisecond)
			}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
					transfer()
				}
			})
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, opts)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("dev region start with leadership moving (%d transfers): %v", moved.Load(), err)
	}
	defer d.Stop(context.Background())
	if moved.Load() == 0 {
		t.Fatal("leadership never moved during the setup: the test exercised nothing")
	}
	if len(d.Agents()) != 1 || d.Agents()[0].Status().AgentID == "" {
		t.Fatalf("the dev agent did not enroll: %+v", d.Agents())
	}
	t.Logf("setup finished through %d leadership transfers", moved.Load())
}
