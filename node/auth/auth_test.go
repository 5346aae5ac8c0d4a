package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not argon2id PHC with the documented parameters", h)
	}
	if ok, err := CheckPassword(h, "correct horse battery"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, _ := CheckPassword(h, "correct horse batterY"); ok {
		t.Fatal("wrong password accepted")
	}
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("short password accepted")
	}
	for _, bad := range []string{"", "$argon2id$v=19$m=0,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", "$bcrypt$x"} {
		if _, err := CheckPassword(bad, "x"); err == nil {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
}

func testSessions(t *testing.T, region string) *Sessions {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSessions(region, k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSessionCookie(t *testing.T) {
	s := testSessions(t, "eu")
	now := time.Unix(1_800_000_000, 0)
	v, _ := s.Issue(User{Name: "alice", Epoch: "e1"}, now)
	if c, err := s.parse(v, now.Add(time.Hour)); err != nil || c.User != "alice" || c.Epoch != "e1" {
		t.Fatalf("valid cookie: %+v %v", c, err)
	}
	if _, err := s.parse(v, now.Add(SessionTTL)); err != ErrSessionExpired {
		t.Fatalf("expired cookie: %v", err)
	}
	if _, err := testSessions(t, "eu").parse(v, now); err != ErrBadSession {
		t.Fatalf("cookie under another key: %v", err)
	}
	if _, err := s.parse(v[:len(v)-2]+"AA", now); err != ErrBadSession {
		t.Fatalf("bad signature: %v", err)
	}
}

// FuzzSessionParse: cookie values are attacker-controlled; the parser
// never panics and never accepts what it did not sign.
func FuzzSessionParse(f *testing.F) {
	s := testSessionsF(f)
	now := time.Unix(1_800_000_000, 0)
	v, _ := s.Issue(User{Name: "alice", Epoch: "e1"}, now)
	f.Add(v)
	f.Add("a.b")
	f.Add("")
	f.Fuzz(func(t *testing.T, val string) {
		c, err := s.parse(val, now)
		if err == nil && val != v {
			t.Fatalf("accepted a cookie it did not issue: %q -> %+v", val, c)
		}
	})
}

func testSessionsF(f *testing.F) *Sessions {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := NewSessions("eu", k)
	if err != nil {
		f.Fatal(err)
	}
	return s
}

func TestTokenFormat(t *testing.T) {
	tok, id := NewToken()
	if got, ok := tokenID(tok); !ok || got != id {
		t.Fatalf("tokenID(%q) = %q %v", tok, got, ok)
	}
	if !tokenMatches(tok, TokenHash(tok)) || tokenMatches(tok+"x", TokenHash(tok)) || tokenMatches(tok, nil) {
		t.Fatal("token hash comparison is wrong")
	}
	for _, bad := range []string{"", "opt_", "opt_zzzzzzzzzzzz_" + strings.Repeat("a", 43), "xyz_" + id + "_" + strings.Repeat("a", 43)} {
		if _, ok := tokenID(bad); ok {
			t.Errorf("tokenID accepted %q", bad)
		}
	}
}

func TestAccessRules(t *testing.T) {
	acme := Tenant{ID: "a1", Name: "acme"}
	now := time.Unix(1000, 0)
	viewer := &Principal{Actor: "user:v", Roles: map[string]Role{"a1": Viewer}}
	if _, _, err := viewer.Access(acme, Viewer, nil, now); err != nil {
		t.Fatalf("viewer read: %v", err)
	}
	if _, _, err := viewer.Access(acme, Operator, nil, now); err == nil {
		t.Fatal("viewer got operator access")
	}
	stranger := &Principal{Actor: "user:s", Roles: map[string]Role{"b2": Admin}}
	if _, _, err := stranger.Access(acme, Viewer, nil, now); err != ErrNoTenant {
		t.Fatalf("member of another tenant: %v", err)
	}
	ra := &Principal{Actor: "user:root", RegionAdmin: true, Roles: map[string]Role{}}
	g := Grant{ID: "g", Tenant: "a1", Requester: "user:root", Approved: true, Expires: now.Add(time.Minute)}
	if _, _, err := ra.Access(acme, Viewer, nil, now); err != ErrNeedsGrant {
		t.Fatalf("region admin without grant: %v", err)
	}
	if h, via, err := ra.Access(acme, Viewer, []Grant{g}, now); err != nil || via != "breakglass:g" || h.ID() != "a1" {
		t.Fatalf("region admin with grant: %v %v %v", h, via, err)
	}
	if _, _, err := ra.Access(acme, Operator, []Grant{g}, now); err == nil {
		t.Fatal("a grant gave write access")
	}
	if _, _, err := ra.Access(acme, Viewer, []Grant{g}, now.Add(time.Minute)); err != ErrNeedsGrant {
		t.Fatalf("expired grant: %v", err)
	}
	other := g
	other.Requester = "user:someone-else"
	if _, _, err := ra.Access(acme, Viewer, []Grant{other}, now); err != ErrNeedsGrant {
		t.Fatalf("another admin's grant: %v", err)
	}
}

func TestRateLimiter(t *testing.T) {
	l := &RateLimiter{Every: time.Second, Burst: 3}
	now := time.Unix(0, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("1.2.3.4", now); !ok {
			t.Fatalf("attempt %d refused within the burst", i)
		}
	}
	if ok, wait := l.Allow("1.2.3.4", now); ok || wait <= 0 {
		t.Fatalf("fourth attempt: %v %v", ok, wait)
	}
	if ok, _ := l.Allow("5.6.7.8", now); !ok {
		t.Fatal("another address was limited")
	}
	if ok, _ := l.Allow("1.2.3.4", now.Add(time.Second)); !ok {
		t.Fatal("no refill after a second")
	}
}

// TestRateLimiterCountsFailuresOnly: checks take nothing, so any number
// of attempts that succeed pass; failures each count, also when they ran
// in parallel (debt), and are waited out.
func TestRateLimiterCountsFailuresOnly(t *testing.T) {
	l := &RateLimiter{Every: time.Second, Burst: 2}
	now := time.Unix(0, 0)
	for i := 0; i < 100; i++ {
		if ok, _ := l.Ready("1.2.3.4", now); !ok {
			t.Fatalf("check %d refused although nothing failed", i)
		}
	}
	// Three failures that passed the check together: all count.
	for i := 0; i < 3; i++ {
		l.Count("1.2.3.4", now)
	}
	if ok, wait := l.Ready("1.2.3.4", now); ok || wait != 2*time.Second {
		t.Fatalf("after three failures with a burst of two: %v, wait %v (want 2s: one attempt of debt)", ok, wait)
	}
	if ok, _ := l.Ready("5.6.7.8", now); !ok {
		t.Fatal("another address was limited")
	}
	if ok, _ := l.Ready("1.2.3.4", now.Add(2*time.Second)); !ok {
		t.Fatal("the debt was not waited out after 2s")
	}
}

// TestConcurrency: at most Max in flight per key; a released slot is
// free again; keys do not share slots.
func TestConcurrency(t *testing.T) {
	c := &Concurrency{Max: 2}
	for i := range 2 {
		if !c.Acquire("a") {
			t.Fatalf("slot %d of 2 was refused", i+1)
		}
	}
	if c.Acquire("a") {
		t.Fatal("a third slot was given with Max 2")
	}
	if !c.Acquire("b") {
		t.Fatal("another key was limited")
	}
	c.Release("a")
	if !c.Acquire("a") {
		t.Fatal("a released slot was not free again")
	}
}

// TestTokenOwnerName: the account a token acts for, for tokens made
// before owners were recorded too; a token that names no account acts
// for none.
func TestTokenOwnerName(t *testing.T) {
	for _, c := range []struct {
		tok  Token
		want string
	}{
		{Token{Owner: "alice", CreatedBy: "user:alice"}, "alice"},
		{Token{CreatedBy: "user:bob"}, "bob"},
		{Token{CreatedBy: "oidc:https://idp/x"}, "oidc:https://idp/x"},
		{Token{CreatedBy: "token:0123"}, ""},
		{Token{CreatedBy: "system"}, ""},
		{Token{CreatedBy: "system", Owner: "admin"}, "admin"},
	} {
		if got := c.tok.OwnerName(); got != c.want {
			t.Errorf("%+v: OwnerName = %q, want %q", c.tok, got, c.want)
		}
	}
}

// TestLockSource: an IPv6 client is keyed by its /64 (one host's share),
// an IPv4 client by its address.
func TestLockSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"not-an-address":       "not-an-address",
	} {
		if got := LockSource(in); got != want {
			t.Errorf("LockSource(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLockoutSourcesBounded: an account's record tracks at most
// maxLockSources sources, dropping the oldest; entries past the window
// that lock nothing are dropped.
func TestLockoutSourcesBounded(t *testing.T) {
	m := map[string]SourceLock{}
	for i := range maxLockSources + 10 {
		m[fmt.Sprint("s", i)] = SourceLock{Failures: 1, FirstMs: int64(1000 + i)}
	}
	m["stale"] = SourceLock{Failures: 3, FirstMs: -5000}
	m["locked-long-ago"] = SourceLock{FirstMs: -4000, LockedUntilMs: 10_000_000}
	pruneSources(m, 1500, 3000)
	if len(m) != maxLockSources {
		t.Fatalf("%d sources kept, want %d", len(m), maxLockSources)
	}
	if _, ok := m["stale"]; ok {
		t.Error("an entry past the window that locks nothing was kept")
	}
	if _, ok := m["locked-long-ago"]; ok {
		t.Error("kept the oldest entry over newer ones past the bound")
	}
	if _, ok := m[fmt.Sprint("s", maxLockSources+9)]; !ok {
		t.Error("the newest entry was dropped")
	}
}
