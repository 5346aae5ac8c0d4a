package node_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/node"
)

// TestLockoutIsPerSource: wrong passwords from one address lock the
// account for that address only, so anyone cannot lock the owner out by
// failing five times; the owner logs in from another address. Many
// failures from everywhere slow the account for all: one attempt per
// slow_every, which passes once the spacing is kept.
func TestLockoutIsPerSource(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.Auth.Lockout.SlowAfter, cfg.Auth.Lockout.SlowEvery = 8, 2*time.Second
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	pw := tn.newUser(t, "carol")
	bad := `{"username":"carol","password":"not-the-password"}`
	good := fmt.Sprintf(`{"username":"carol","password":%q}`, pw)
	for i := 1; i <= 5; i++ {
		r := tn.doFrom(t, "127.0.0.2", "POST", "/api/v1/login", "", bad)
		if want := map[bool]int{true: 429, false: 401}[i == 5]; r.code != want {
			t.Fatalf("failure %d from the attacker: %d %s, want %d", i, r.code, r.body, want)
		}
	}
	if r := tn.doFrom(t, "127.0.0.2", "POST", "/api/v1/login", "", good); r.code != 429 || !strings.Contains(r.body, "locked for your address") {
		t.Fatalf("right password from the locked address: %d %s, want 429", r.code, r.body)
	}
	if r := tn.doFrom(t, "127.0.0.3", "POST", "/api/v1/login", "", good); r.code != 200 {
		t.Fatalf("the owner from another address: %d %s, want 200 (not locked out by someone else's failures)", r.code, r.body)
	}
	var users []api.User
	_ = json.Unmarshal([]byte(tn.must(t, 200, "GET", "/api/v1/users", tn.token, "")), &users)
	for _, u := range users {
		if u.Name == "carol" && (u.LockedSources != 1 || u.LockedUntil == nil) {
			t.Errorf("users list: carol locked for %d sources until %v, want 1 and a time", u.LockedSources, u.LockedUntil)
		}
	}

	// Three more failures from another address make eight in the window:
	// the account is slowed for everyone, the owner included.
	for i := 0; i < 3; i++ {
		if r := tn.doFrom(t, "127.0.0.4", "POST", "/api/v1/login", "", bad); r.code != 401 {
			t.Fatalf("failure from a second address: %d %s", r.code, r.body)
		}
	}
	r := tn.doFrom(t, "127.0.0.5", "POST", "/api/v1/login", "", good)
	if r.code != 429 || !strings.Contains(r.body, "many wrong passwords") || r.header.Get("Retry-After") == "" {
		t.Fatalf("right password on a slowed account, at once: %d %s, want 429 with Retry-After", r.code, r.body)
	}
	time.Sleep(2100 * time.Millisecond)
	if r := tn.doFrom(t, "127.0.0.5", "POST", "/api/v1/login", "", good); r.code != 200 {
		t.Fatalf("right password on a slowed account after the spacing: %d %s, want 200", r.code, r.body)
	}
}
