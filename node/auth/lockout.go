package auth

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/outpost-mesh/outpost/raft"
	"github.com/outpost-mesh/outpost/storage"
)

// Raft command types of this package (raft.Config.Handlers).
const (
	// CmdLoginFailed counts a failed login against an account, locking it
	// after LockoutPolicy.MaxFailures within the window. Counting in the
	// FSM makes concurrent failures on different nodes add up exactly.
	CmdLoginFailed raft.CommandType = 64
	// CmdLoginSucceeded clears an account's failure count.
	CmdLoginSucceeded raft.CommandType = 65
)

// Handlers are the FSM handlers of this package's commands.
func Handlers() map[raft.CommandType]raft.HandlerFunc {
	return map[raft.CommandType]raft.HandlerFunc{
		CmdLoginFailed:    applyLoginFailed,
		CmdLoginSucceeded: applyLoginSucceeded,
	}
}

// LockoutPolicy is when repeated wrong passwords lock an account for
// the address they came from, and when they slow the account down for
// everyone. A lock is per account and source, so a storm of wrong
// passwords from one address does not lock the owner out from another;
// the account-wide slowdown bounds guessing from many addresses.
type LockoutPolicy struct {
	// MaxFailures from one source within Window lock the account for
	// that source. Default 5.
	MaxFailures int `yaml:"max_failures"`
	// Window is how far back failures count. Default 15m.
	Window time.Duration `yaml:"window"`
	// LockFor is how long the account stays locked for that source.
	// Default 15m.
	LockFor time.Duration `yaml:"lock_for"`
	// SlowAfter failures from all sources within Window slow the
	// account: one attempt per SlowEvery, from anywhere. Default 20.
	SlowAfter int `yaml:"slow_after"`
	// SlowEvery is the spacing of attempts on a slowed account.
	// Default 2s.
	SlowEvery time.Duration `yaml:"slow_every"`
}

// DefaultLockoutPolicy locks an account for a source for 15 minutes
// after 5 failures from it in 15 minutes, and allows one attempt every 2
// seconds once 20 failures from anywhere came in 15 minutes.
func DefaultLockoutPolicy() LockoutPolicy {
	return LockoutPolicy{MaxFailures: 5, Window: 15 * time.Minute, LockFor: 15 * time.Minute, SlowAfter: 20, SlowEvery: 2 * time.Second}
}

// maxLockSources bounds the sources an account's record tracks; past it
// the entry that changed longest ago is dropped (an attacker with that
// many addresses is held by the account-wide slowdown).
const maxLockSources = 256

// LockoutState is an account's failure counts: per source and in all.
type LockoutState struct {
	Sources map[string]SourceLock `json:"sources,omitempty"`
	// Failures from every source since FirstMs; LastMs is the latest.
	Failures int   `json:"failures"`
	FirstMs  int64 `json:"first_ms"`
	LastMs   int64 `json:"last_ms,omitempty"`
}

// SourceLock is the failure count of one account from one source.
type SourceLock struct {
	Failures      int   `json:"failures"`
	FirstMs       int64 `json:"first_ms"`
	LockedUntilMs int64 `json:"locked_until_ms,omitempty"`
}

// LockedUntil is when the account's lock for source ends (zero when it is
// not locked for source at now).
func (s LockoutState) LockedUntil(source string, now time.Time) time.Time {
	if l := s.Sources[source]; l.LockedUntilMs > now.UnixMilli() {
		return time.UnixMilli(l.LockedUntilMs)
	}
	return time.Time{}
}

// LockedSources counts the sources the account is locked for at now.
func (s LockoutState) LockedSources(now time.Time) int {
	n := 0
	for _, l := range s.Sources {
		if l.LockedUntilMs > now.UnixMilli() {
			n++
		}
	}
	return n
}

// SlowedUntil is when the next attempt on the account may come under
// policy p (zero when it is not slowed at now).
func (s LockoutState) SlowedUntil(p LockoutPolicy, now time.Time) time.Time {
	if p.SlowAfter < 1 || s.Failures < p.SlowAfter || now.UnixMilli()-s.FirstMs > p.Window.Milliseconds() {
		return time.Time{}
	}
	if next := time.UnixMilli(s.LastMs).Add(p.SlowEvery); next.After(now) {
		return next
	}
	return time.Time{}
}

type loginEvent struct {
	User     string `json:"user"`
	Source   string `json:"source,omitempty"`
	TimeMs   int64  `json:"time_ms"`
	Max      int    `json:"max"`
	WindowMs int64  `json:"window_ms"`
	LockMs   int64  `json:"lock_ms"`
}

// LockSource is the source a lock is keyed to for a client address: the
// address itself, or its /64 for IPv6 (one host's share of addresses).
func LockSource(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// LoginFailed encodes a failed login for user from source at now under
// policy p.
func LoginFailed(user, source string, now time.Time, p LockoutPolicy) []byte {
	b, _ := json.Marshal(loginEvent{User: user, Source: source, TimeMs: now.UnixMilli(), Max: p.MaxFailures, WindowMs: p.Window.Milliseconds(), LockMs: p.LockFor.Milliseconds()})
	return append([]byte{byte(CmdLoginFailed)}, b...)
}

// LoginSucceeded encodes a successful login for user from source: it
// clears that source's failures (not the others', nor the account-wide
// count).
func LoginSucceeded(user, source string) []byte {
	b, _ := json.Marshal(loginEvent{User: user, Source: source})
	return append([]byte{byte(CmdLoginSucceeded)}, b...)
}

func decodeEvent(payload []byte) (loginEvent, error) {
	var e loginEvent
	if err := json.Unmarshal(payload, &e); err != nil || ValidUserName(e.User) != nil && !isOIDCName(e.User) || len(e.Source) > 64 {
		return e, fmt.Errorf("%w: bad login event", raft.ErrBadCommand)
	}
	return e, nil
}

// applyLoginFailed is deterministic: the time comes from the entry.
// It returns the new state as JSON.
func applyLoginFailed(tx *storage.Tx, _ uint64, payload []byte) ([]byte, error) {
	e, err := decodeEvent(payload)
	if err != nil {
		return nil, err
	}
	if e.Max < 1 || e.WindowMs < 1 || e.LockMs < 1 {
		return nil, fmt.Errorf("%w: bad lockout policy", raft.ErrBadCommand)
	}
	s := Reader{tx}.Lockout(e.User)
	if s.Failures == 0 || e.TimeMs-s.FirstMs > e.WindowMs {
		s.Failures, s.FirstMs = 0, e.TimeMs
	}
	s.Failures++
	s.LastMs = e.TimeMs
	if s.Sources == nil {
		s.Sources = map[string]SourceLock{}
	}
	l := s.Sources[e.Source]
	switch {
	case l.LockedUntilMs > e.TimeMs:
		// Already locked: a failure does not extend the lock.
	default:
		if l.Failures == 0 || e.TimeMs-l.FirstMs > e.WindowMs {
			l = SourceLock{FirstMs: e.TimeMs}
		}
		l.Failures++
		if l.Failures >= e.Max {
			l = SourceLock{FirstMs: e.TimeMs, LockedUntilMs: e.TimeMs + e.LockMs}
		}
	}
	s.Sources[e.Source] = l
	pruneSources(s.Sources, e.TimeMs, e.WindowMs)
	b, _ := json.Marshal(s)
	return b, tx.Put(BucketLockout, []byte(e.User), b)
}

// pruneSources drops entries that neither lock nor count any more and,
// past maxLockSources, those that changed longest ago.
func pruneSources(m map[string]SourceLock, nowMs, windowMs int64) {
	for k, l := range m {
		if l.LockedUntilMs <= nowMs && nowMs-l.FirstMs > windowMs {
			delete(m, k)
		}
	}
	for len(m) > maxLockSources {
		oldest, first := "", int64(math.MaxInt64)
		for k, l := range m {
			if l.FirstMs < first || l.FirstMs == first && k < oldest {
				oldest, first = k, l.FirstMs
			}
		}
		delete(m, oldest)
	}
}

func applyLoginSucceeded(tx *storage.Tx, _ uint64, payload []byte) ([]byte, error) {
	e, err := decodeEvent(payload)
	if err != nil {
		return nil, err
	}
	s := Reader{tx}.Lockout(e.User)
	if _, ok := s.Sources[e.Source]; !ok {
		return nil, nil
	}
	delete(s.Sources, e.Source)
	b, _ := json.Marshal(s)
	return nil, tx.Put(BucketLockout, []byte(e.User), b)
}

// RateLimiter bounds login attempts per client address on this node:
// Burst attempts, then one per Every. It keeps at most maxKeys addresses.
type RateLimiter struct {
	Every time.Duration
	Burst int

	mu   sync.Mutex
	seen map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxKeys = 100000

// Allow takes one attempt for key, or says how long to wait.
func (l *RateLimiter) Allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketOf(key, now)
	if b.refill(now, l) >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.Every))
}

// Ready reports whether key has an attempt left, without taking one, or
// how long to wait. With Count it limits only what went wrong: check
// first, count the failures afterwards.
func (l *RateLimiter) Ready(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketOf(key, now)
	if b.refill(now, l) >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.Every))
}

// Count takes one attempt for key, going into debt if none is left:
// failures that ran in parallel each count, and the debt is waited out.
func (l *RateLimiter) Count(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketOf(key, now)
	b.refill(now, l)
	b.tokens--
}

// Concurrency bounds the calls in flight per key (a client address): a
// cap on what one address can have outstanding at once, separate from
// any limit on its failures. The zero value with Max set is ready.
type Concurrency struct {
	Max int

	mu       sync.Mutex
	inFlight map[string]int
}

// Acquire takes a slot for key, or reports false when key has Max calls
// in flight. A taken slot must be given back with Release.
func (c *Concurrency) Acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight == nil {
		c.inFlight = map[string]int{}
	}
	if c.inFlight[key] >= c.Max {
		return false
	}
	c.inFlight[key]++
	return true
}

// Release gives back a slot Acquire took.
func (c *Concurrency) Release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight[key] <= 1 {
		delete(c.inFlight, key)
		return
	}
	c.inFlight[key]--
}

func (l *RateLimiter) bucketOf(key string, now time.Time) *bucket {
	if l.seen == nil {
		l.seen = map[string]*bucket{}
	}
	b, ok := l.seen[key]
	if !ok {
		if len(l.seen) >= maxKeys {
			// Drop full buckets (addresses that have recovered).
			for k, v := range l.seen {
				if v.refill(now, l) >= float64(l.Burst) {
					delete(l.seen, k)
				}
			}
		}
		b = &bucket{tokens: float64(l.Burst), last: now}
		l.seen[key] = b
	}
	return b
}

func (b *bucket) refill(now time.Time, l *RateLimiter) float64 {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(float64(l.Burst), b.tokens+float64(el)/float64(l.Every))
		b.last = now
	}
	return b.tokens
}
