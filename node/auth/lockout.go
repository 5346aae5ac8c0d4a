package auth

import (
	"encoding/json"
	"fmt"
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

// LockoutPolicy is when repeated wrong passwords lock an account.
type LockoutPolicy struct {
	// MaxFailures within Window lock the account. Default 5.
	MaxFailures int `yaml:"max_failures"`
	// Window is how far back failures count. Default 15m.
	Window time.Duration `yaml:"window"`
	// LockFor is how long the account stays locked. Default 15m.
	LockFor time.Duration `yaml:"lock_for"`
}

// DefaultLockoutPolicy locks for 15 minutes after 5 failures in 15 minutes.
func DefaultLockoutPolicy() LockoutPolicy {
	return LockoutPolicy{MaxFailures: 5, Window: 15 * time.Minute, LockFor: 15 * time.Minute}
}

// LockoutState is an account's failure count.
type LockoutState struct {
	Failures      int   `json:"failures"`
	FirstMs       int64 `json:"first_ms"`
	LockedUntilMs int64 `json:"locked_until_ms,omitempty"`
}

// LockedUntil is when the lock ends (zero when not locked at now).
func (s LockoutState) LockedUntil(now time.Time) time.Time {
	if s.LockedUntilMs > now.UnixMilli() {
		return time.UnixMilli(s.LockedUntilMs)
	}
	return time.Time{}
}

type loginEvent struct {
	User     string `json:"user"`
	TimeMs   int64  `json:"time_ms"`
	Max      int    `json:"max"`
	WindowMs int64  `json:"window_ms"`
	LockMs   int64  `json:"lock_ms"`
}

// LoginFailed encodes a failed login for user at now under policy p.
func LoginFailed(user string, now time.Time, p LockoutPolicy) []byte {
	b, _ := json.Marshal(loginEvent{User: user, TimeMs: now.UnixMilli(), Max: p.MaxFailures, WindowMs: p.Window.Milliseconds(), LockMs: p.LockFor.Milliseconds()})
	return append([]byte{byte(CmdLoginFailed)}, b...)
}

// LoginSucceeded encodes a successful login for user.
func LoginSucceeded(user string) []byte {
	b, _ := json.Marshal(loginEvent{User: user})
	return append([]byte{byte(CmdLoginSucceeded)}, b...)
}

func decodeEvent(payload []byte) (loginEvent, error) {
	var e loginEvent
	if err := json.Unmarshal(payload, &e); err != nil || ValidUserName(e.User) != nil && !isOIDCName(e.User) {
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
	if s.LockedUntilMs > e.TimeMs {
		// Already locked: a failure does not extend the lock.
		return json.Marshal(s)
	}
	if s.Failures == 0 || e.TimeMs-s.FirstMs > e.WindowMs {
		s = LockoutState{FirstMs: e.TimeMs}
	}
	s.Failures++
	if s.Failures >= e.Max {
		s = LockoutState{LockedUntilMs: e.TimeMs + e.LockMs}
	}
	b, _ := json.Marshal(s)
	return b, tx.Put(BucketLockout, []byte(e.User), b)
}

func applyLoginSucceeded(tx *storage.Tx, _ uint64, payload []byte) ([]byte, error) {
	e, err := decodeEvent(payload)
	if err != nil {
		return nil, err
	}
	return nil, tx.Delete(BucketLockout, []byte(e.User))
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
