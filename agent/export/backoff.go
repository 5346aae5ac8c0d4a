package export

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps a node's Retry-After: one that asks for hours is a
// misconfiguration, and the batches would wait on it.
const maxRetryAfter = 5 * time.Minute

// backoff is the wait between retries: from min, doubling to max, each
// wait jittered so agents that lost one node do not retry in step.
type backoff struct {
	min, max time.Duration
	cur      time.Duration // the last un-jittered wait; 0 after reset
}

// next returns the next wait: between half of and the whole un-jittered
// value.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// retryAfter reads a Retry-After header (delay-seconds or an HTTP date),
// capped at maxRetryAfter; ok is false if there is none or it is not
// understood.
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return min(time.Duration(secs)*time.Second, maxRetryAfter), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfter), true
}

// spread adds up to a tenth to a node's Retry-After, so the agents it
// turned away do not all come back in the same instant.
func spread(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}
