package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/internal/agentwire"
	"github.com/outpost-mesh/outpost/node"
)

// sendVia posts body to base+path from the loopback address from, with
// X-Forwarded-For: xff when xff is not empty; base is the API's URL or
// the agent port's (TLS, not verified: the test checks limits, not
// identity).
func sendVia(t *testing.T, base, from, xff, path, body string) resp {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a test client
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, string(b), r.Header}
}

// hasDetail reports whether some audit record of action carries every
// key/value of want in its detail, and none of the keys in absent.
func hasDetail(t *testing.T, tn *testNode, action string, want map[string]string, absent ...string) bool {
	t.Helper()
next:
	for _, d := range auditDetails(t, tn, tn.token, action) {
		for k, v := range want {
			if !strings.Contains(d, fmt.Sprintf("%q:%q", k, v)) {
				continue next
			}
		}
		for _, k := range absent {
			if strings.Contains(d, fmt.Sprintf("%q:", k)) {
				continue next
			}
		}
		return true
	}
	return false
}

// TestTrustedProxyKeysClientsApart: behind a trusted proxy (127.0.0.2),
// clients are told apart by the X-Forwarded-For the proxy appended: an
// attacker's failures lock the account for the attacker only, and the
// owner behind the same proxy logs in; the attacker cannot pose as the
// owner by writing the owner's address further left; IPv6 clients are
// grouped by /64; the login rate limit is per client; audit records name
// the client as remote and the proxy as peer.
func TestTrustedProxyKeysClientsApart(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.HTTP.TrustedProxies = []string{"127.0.0.2"}
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	login := func(xff, user, password string) resp {
		t.Helper()
		return sendVia(t, tn.url, "127.0.0.2", xff, "/api/v1/login", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	}

	t.Run("lockout per forwarded client", func(t *testing.T) {
		pw := tn.newUser(t, "carol")
		for i := 1; i <= 5; i++ {
			if r, want := login("198.51.100.7", "carol", "not-the-password"), map[bool]int{true: 429, false: 401}[i == 5]; r.code != want {
				t.Fatalf("failure %d from the attacker behind the proxy: %d %s, want %d", i, r.code, r.body, want)
			}
		}
		if r := login("203.0.113.9, 198.51.100.7", "carol", pw); r.code != 429 {
			t.Fatalf("the attacker naming the owner's address left of its own: %d %s, want 429 (the proxy's entry is the right-most)", r.code, r.body)
		}
		if r := login("203.0.113.9", "carol", pw); r.code != 200 {
			t.Fatalf("the owner behind the same proxy: %d %s, want 200 (not locked out by the attacker)", r.code, r.body)
		}
		if !hasDetail(t, tn, "auth.login_failed", map[string]string{"remote": "198.51.100.7", "peer": "127.0.0.2"}) {
			t.Errorf("no auth.login_failed record with remote 198.51.100.7 and peer 127.0.0.2: %q", auditDetails(t, tn, tn.token, "auth.login_failed"))
		}
	})

	t.Run("IPv6 clients grouped by /64", func(t *testing.T) {
		pw := tn.newUser(t, "dave")
		for i := 1; i <= 5; i++ {
			if r, want := login(fmt.Sprintf("2001:db8:1:2::%x", i), "dave", "not-the-password"), map[bool]int{true: 429, false: 401}[i == 5]; r.code != want {
				t.Fatalf("failure %d from another address of one /64: %d %s, want %d", i, r.code, r.body, want)
			}
		}
		if r := login("2001:db8:1:2::ffff", "dave", pw); r.code != 429 {
			t.Fatalf("a fresh address of the locked /64: %d %s, want 429", r.code, r.body)
		}
		if r := login("2001:db8:1:3::1", "dave", pw); r.code != 200 {
			t.Fatalf("another /64: %d %s, want 200", r.code, r.body)
		}
	})

	t.Run("rate limit per forwarded client", func(t *testing.T) {
		for i := 1; i <= 10; i++ {
			if r := login("198.51.100.20", "nobody", "whatever-it-is"); r.code != 401 {
				t.Fatalf("attempt %d: %d %s, want 401", i, r.code, r.body)
			}
		}
		if r := login("198.51.100.20", "nobody", "whatever-it-is"); r.code != 429 || !strings.Contains(r.body, "too many login attempts") {
			t.Fatalf("eleventh attempt from one client: %d %s, want 429", r.code, r.body)
		}
		if r := login("198.51.100.21", "nobody", "whatever-it-is"); r.code != 401 {
			t.Fatalf("another client behind the same proxy: %d %s, want 401 (its own limit)", r.code, r.body)
		}
	})
}

// TestUntrustedPeerCannotSpoofForwardedFor: a client connecting directly
// (no proxy trusted, or one that is not it) gets nothing from writing
// X-Forwarded-For: a new address in every request neither escapes the
// lockout of its own address nor the login rate limit, and the records
// name its own address.
func TestUntrustedPeerCannotSpoofForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
	}{
		{"no proxy trusted", nil},
		{"another address trusted", []string{"127.0.0.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nodeConfig(t, t.TempDir())
			cfg.HTTP.TrustedProxies = tc.trusted
			tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
			pw := tn.newUser(t, "carol")
			login := func(from, xff, user, password string) resp {
				t.Helper()
				return sendVia(t, tn.url, from, xff, "/api/v1/login", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
			}
			for i := 1; i <= 5; i++ {
				if r, want := login("127.0.0.3", fmt.Sprintf("198.51.100.%d", i), "carol", "not-the-password"), map[bool]int{true: 429, false: 401}[i == 5]; r.code != want {
					t.Fatalf("failure %d with a new spoofed X-Forwarded-For: %d %s, want %d", i, r.code, r.body, want)
				}
			}
			if r := login("127.0.0.3", "203.0.113.9", "carol", pw); r.code != 429 {
				t.Fatalf("the locked address spoofing another: %d %s, want 429", r.code, r.body)
			}
			if !hasDetail(t, tn, "auth.login_failed", map[string]string{"remote": "127.0.0.3"}, "peer") {
				t.Errorf("no auth.login_failed record with remote 127.0.0.3 and no peer: %q", auditDetails(t, tn, tn.token, "auth.login_failed"))
			}
			// The peer's budget is a burst of 10 refilled one per 6s. Each
			// attempt names a new spoofed address; the limit must hold the
			// peer anyway. On a slow machine the attempts themselves take
			// seconds, so the tokens refilled meanwhile are allowed for.
			start, allowed := time.Now(), 0
			for i := 1; ; i++ {
				r := login("127.0.0.4", fmt.Sprintf("198.51.100.%d", 100+i), "nobody", "whatever-it-is")
				if r.code == 429 {
					break
				}
				if r.code != 401 {
					t.Fatalf("attempt %d: %d %s, want 401 or, once the budget is spent, 429", i, r.code, r.body)
				}
				allowed++
				if limit := 10 + int(time.Since(start)/(6*time.Second)) + 1; allowed > limit {
					t.Fatalf("%d attempts with a new spoofed address each were allowed in %v, above the peer's budget of %d: the header chose the address",
						allowed, time.Since(start).Round(time.Millisecond), limit)
				}
			}
			if allowed < 10 {
				t.Errorf("refused after %d attempts, before the burst of 10 was spent", allowed)
			}
		})
	}
}

// TestEnrollmentBehindProxy: enrollment refusals are limited per client
// on the API port, where a trusted proxy's X-Forwarded-For names it, and
// per peer on the agent port, which never reads the header even from a
// trusted address (all of loopback is trusted here). The agent.enroll
// record names the forwarded client and the proxy on the API port, and
// the peer alone on the agent port.
func TestEnrollmentBehindProxy(t *testing.T) {
	cfg := nodeConfig(t, t.TempDir())
	cfg.HTTP.TrustedProxies = []string{"127.0.0.0/8"}
	tn := startNode(t, cfg, mustKeys(t, newMasterKey(t), nil), node.Options{})
	alice, _ := twoTenants(t, tn)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bogus := enrollBody("opb_not-a-token", csrFor(t, key), "h")

	t.Run("API port: per forwarded client", func(t *testing.T) {
		for i := 1; i <= 10; i++ {
			if r := sendVia(t, tn.url, "127.0.0.31", "198.51.100.1", agentwire.PathEnroll, bogus); r.code != 401 {
				t.Fatalf("refusal %d: %d %s, want 401", i, r.code, r.body)
			}
		}
		if r := sendVia(t, tn.url, "127.0.0.31", "198.51.100.1", agentwire.PathEnroll, bogus); r.code != 429 {
			t.Fatalf("after ten refusals of one client: %d %s, want 429", r.code, r.body)
		}
		if r := sendVia(t, tn.url, "127.0.0.31", "198.51.100.2", agentwire.PathEnroll, bogus); r.code != 401 {
			t.Fatalf("another client behind the same proxy: %d %s, want 401 (its own limit)", r.code, r.body)
		}
		bt := newToken(t, tn, alice, "acme")
		if r := sendVia(t, tn.url, "127.0.0.31", "198.51.100.9", agentwire.PathEnroll, enrollBody(bt.Token, csrFor(t, key), "via-proxy")); r.code != 201 {
			t.Fatalf("enrollment through the proxy: %d %s", r.code, r.body)
		}
		if !hasDetail(t, tn, "agent.enroll", map[string]string{"host": "via-proxy", "from": "198.51.100.9", "peer": "127.0.0.31"}) {
			t.Errorf("no agent.enroll record from 198.51.100.9 with peer 127.0.0.31: %q", auditDetails(t, tn, tn.token, "agent.enroll"))
		}
	})

	t.Run("agent port: per peer, header ignored", func(t *testing.T) {
		agentURL := tn.n.AgentURL()
		for i := 1; i <= 10; i++ {
			if r := sendVia(t, agentURL, "127.0.0.32", fmt.Sprintf("198.51.100.%d", 10+i), agentwire.PathEnroll, bogus); r.code != 401 {
				t.Fatalf("refusal %d: %d %s, want 401", i, r.code, r.body)
			}
		}
		if r := sendVia(t, agentURL, "127.0.0.32", "198.51.100.99", agentwire.PathEnroll, bogus); r.code != 429 {
			t.Fatalf("eleventh refusal with yet another X-Forwarded-For on the agent port: %d %s, want 429", r.code, r.body)
		}
		bt := newToken(t, tn, alice, "acme")
		if r := sendVia(t, agentURL, "127.0.0.33", "198.51.100.9", agentwire.PathEnroll, enrollBody(bt.Token, csrFor(t, key), "direct")); r.code != 201 {
			t.Fatalf("enrollment on the agent port: %d %s", r.code, r.body)
		}
		if !hasDetail(t, tn, "agent.enroll", map[string]string{"host": "direct", "from": "127.0.0.33"}, "peer") {
			t.Errorf("no agent.enroll record from 127.0.0.33 without a peer: %q", auditDetails(t, tn, tn.token, "agent.enroll"))
		}
	})
}
