package export

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRunning is a second Run of a Sender while the first has not
// returned: one Sender drains its spool from one loop, in order.
var ErrRunning = errors.New("export sender already running")

// Config configures a Sender; zero durations take DefaultConfig's.
type Config struct {
	// Target returns where to send now: the attached node's OTLP URL
	// (https://host:port/v1/metrics) and the mutual-TLS client that
	// reaches it. ok is false while the agent is attached to no node,
	// and the Sender waits. It is asked before every request, so a
	// failover takes effect on the next one. Required.
	Target func() (url string, client *http.Client, ok bool)
	// Timeout bounds one request, its answer included (default 10s).
	Timeout time.Duration
	// MinBackoff is the wait after a first failed request; each further
	// failure doubles it, up to MaxBackoff, and every wait is jittered
	// down by up to half (defaults 500ms and 30s). A node's Retry-After
	// replaces it. Longer waits spare a struggling node; shorter ones
	// deliver sooner after it recovers.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often a Sender that is idle, detached or backing off
	// looks again for batches and for a new target without a Kick
	// (default 1s). A target that changes cuts a backoff short: a
	// failover need not sit out the old node's.
	Poll time.Duration
	// Logger receives the Sender's logs (default: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Target must still be set.
func DefaultConfig() Config {
	return Config{Timeout: 10 * time.Second, MinBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, Poll: time.Second}
}

// Validate rejects a Config a Sender cannot run with, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Target == nil:
		return errors.New("export: Target is required: the function that returns the attached node's URL and client")
	case c.Timeout <= 0:
		return fmt.Errorf("export: Timeout %v must be positive", c.Timeout)
	case c.MinBackoff <= 0:
		return fmt.Errorf("export: MinBackoff %v must be positive", c.MinBackoff)
	case c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("export: MaxBackoff %v must be at least MinBackoff (%v)", c.MaxBackoff, c.MinBackoff)
	case c.Poll <= 0:
		return fmt.Errorf("export: Poll %v must be positive", c.Poll)
	}
	return nil
}

// Stats counts what a Sender did since it was made, and what its spool
// holds and lost.
type Stats struct {
	SentBatches uint64 // batches the node accepted (2xx)
	SentBytes   uint64 // their payload, before gzip
	// Retries counts requests that failed and left their batch queued to
	// be sent again: network errors, timeouts, 429, 502, 503, 504.
	Retries uint64
	// Rejected counts batches dropped because the node refused them for
	// good, by HTTP status: samples lost.
	Rejected map[int]uint64
	// RejectedDataPoints sums the partial_success.rejected_data_points
	// of accepted batches: points the node took but did not store.
	RejectedDataPoints uint64
	// LastError is the last failure (a request, a refusal, the disk),
	// at LastErrorTime; LastSuccess is when a batch was last accepted.
	LastError     error
	LastErrorTime time.Time
	LastSuccess   time.Time
	SpoolStats
}

// Sender drains a Spool, in order, to the node the agent is attached to.
type Sender struct {
	spool  *Spool
	cfg    Config
	logger *slog.Logger
	kick   chan struct{}
	// now is the clock; tests replace it before Run.
	now     func() time.Time
	running atomic.Bool

	// Owned by Run's loop.
	zw       *gzip.Writer
	gz       gzipped
	logs     logLimiter
	failures uint64    // consecutive failed requests
	since    time.Time // when the first of them failed
	warned   bool      // a failure of this run of them was logged

	mu    sync.Mutex
	stats Stats // guarded by mu; its SpoolStats is filled by Stats
}

// gzipped is the compressed body of the batch at the head of the queue,
// kept for its retries.
type gzipped struct {
	seq  uint64
	body []byte
}

// New returns a Sender for spool; Run starts it.
func New(spool *Spool, cfg Config) (*Sender, error) {
	if spool == nil {
		return nil, errors.New("export: a Spool is required")
	}
	d := DefaultConfig()
	cfg.Timeout = cmp.Or(cfg.Timeout, d.Timeout)
	cfg.MinBackoff = cmp.Or(cfg.MinBackoff, d.MinBackoff)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, max(d.MaxBackoff, cfg.MinBackoff))
	cfg.Poll = cmp.Or(cfg.Poll, d.Poll)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sender{
		spool:  spool,
		cfg:    cfg,
		logger: logger,
		kick:   make(chan struct{}, 1),
		now:    time.Now,
		zw:     gzip.NewWriter(io.Discard),
		logs:   logLimiter{every: time.Minute},
		stats:  Stats{Rejected: map[int]uint64{}},
	}, nil
}

// Kick wakes the Sender: call it after a Put, and when the agent attaches
// to a node. It never blocks; without it the Sender notices within Poll.
func (s *Sender) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Stats returns the Sender's counters and its spool's.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.Rejected = maps.Clone(s.stats.Rejected)
	s.mu.Unlock()
	st.SpoolStats = s.spool.Stats()
	return st
}

// Run sends the spool's batches, oldest first, until ctx ends, and
// returns nil then; a batch in flight stays queued, to be sent again. It
// starts no goroutines. It returns ErrRunning if another Run is running.
func (s *Sender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	bo := backoff{min: s.cfg.MinBackoff, max: s.cfg.MaxBackoff}
	for ctx.Err() == nil {
		if s.spool.Len() == 0 {
			s.idle(ctx)
			continue
		}
		url, client, ok := s.cfg.Target()
		if !ok {
			s.idle(ctx)
			continue
		}
		seq, batch, ok, err := s.spool.Oldest()
		if err != nil {
			s.noteError(err)
			if held, ok := s.logs.allow("spool", s.now()); ok {
				s.logger.Error("cannot read the export spool; retrying", "err", err, "repeats", held)
			}
			s.pause(ctx, bo.next(), "")
			continue
		}
		if !ok {
			continue // the last batches were corrupt
		}
		r := s.send(ctx, url, client, seq, batch)
		switch r.outcome {
		case stopped:
			return nil
		case delivered:
			bo.reset()
			s.delivered(url, seq, batch, r)
		case rejected:
			s.rejected(url, seq, r)
		case retry:
			wait := bo.next()
			if r.retryAfter >= 0 {
				wait = spread(r.retryAfter)
			}
			s.failed(url, r, wait)
			s.pause(ctx, wait, url)
		}
	}
	return nil
}

// outcome is what a request did with its batch.
type outcome int

const (
	delivered outcome = iota // accepted: remove it
	rejected                 // refused for good: drop it
	retry                    // keep it and send it again
	stopped                  // Run's ctx ended: keep it
)

// result is a request's outcome and what came with it.
type result struct {
	outcome    outcome
	status     int           // the HTTP status, 0 without an answer
	err        error         // why, unless delivered
	retryAfter time.Duration // the node's Retry-After, or -1
	partial    partialSuccess
}

// maxAnswer bounds how much of an answer is read: an OTLP response is a
// few bytes, a refusal a line of text.
const maxAnswer = 64 << 10

// send posts one batch and classifies the answer as OTLP/HTTP says:
// 2xx accepted; 429, 502, 503 and 504 retryable; any other status a
// permanent refusal of this batch, except 401 and 403: those refuse the
// agent's certificate (retired by a renewal a moment ago, or revoked),
// not the batch, so the batch waits in the spool for the renewed
// certificate (a revoked agent's spool stays bounded).
func (s *Sender) send(ctx context.Context, url string, client *http.Client, seq uint64, batch []byte) result {
	if client == nil {
		return result{outcome: retry, err: errors.New("export target has no HTTP client"), retryAfter: -1}
	}
	body, err := s.compress(seq, batch)
	if err != nil {
		return result{outcome: retry, err: err, retryAfter: -1}
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return result{outcome: retry, err: fmt.Errorf("export target: %w", err), retryAfter: -1}
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return result{outcome: stopped}
		}
		return result{outcome: retry, err: err, retryAfter: -1}
	}
	defer resp.Body.Close()
	// A short read is no matter: the status has decided.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		r := result{outcome: delivered, status: code}
		if isProtobuf(resp.Header) && len(answer) > 0 {
			// An answer that does not decode tells nothing more: the
			// batch was accepted all the same.
			r.partial, _ = decodeResponse(answer)
		}
		return r
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout ||
		code == http.StatusUnauthorized || code == http.StatusForbidden:
		r := result{outcome: retry, status: code, err: statusError(resp, answer), retryAfter: -1}
		if d, ok := retryAfter(resp.Header, s.now()); ok {
			r.retryAfter = d
		}
		return r
	default:
		return result{outcome: rejected, status: code, err: statusError(resp, answer)}
	}
}

// statusError describes a refusal with the start of its body, where the
// node says why.
func statusError(resp *http.Response, answer []byte) error {
	msg := strings.TrimSpace(strings.ToValidUTF8(string(answer[:min(len(answer), 256)]), "?"))
	if msg == "" || isProtobuf(resp.Header) {
		return fmt.Errorf("node answered %s", resp.Status)
	}
	return fmt.Errorf("node answered %s: %s", resp.Status, msg)
}

func isProtobuf(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == "application/x-protobuf"
}

// compress gzips batch seq, once for all its retries.
func (s *Sender) compress(seq uint64, batch []byte) ([]byte, error) {
	if s.gz.body != nil && s.gz.seq == seq {
		return s.gz.body, nil
	}
	var buf bytes.Buffer
	s.zw.Reset(&buf)
	if _, err := s.zw.Write(batch); err != nil {
		return nil, fmt.Errorf("compressing batch %d: %w", seq, err)
	}
	if err := s.zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing batch %d: %w", seq, err)
	}
	s.gz = gzipped{seq: seq, body: buf.Bytes()}
	return s.gz.body, nil
}

// delivered removes an accepted batch and counts it.
func (s *Sender) delivered(url string, seq uint64, batch []byte, r result) {
	now := s.now()
	err := s.spool.Remove(seq)
	s.mu.Lock()
	s.stats.SentBatches++
	s.stats.SentBytes += uint64(len(batch))
	s.stats.LastSuccess = now
	if r.partial.Rejected > 0 {
		s.stats.RejectedDataPoints += uint64(r.partial.Rejected)
	}
	s.mu.Unlock()
	if err != nil {
		s.noteError(err)
		if held, ok := s.logs.allow("remove", now); ok {
			s.logger.Warn("a delivered batch could not be deleted from the spool; it may be sent again after a restart",
				"err", err, "repeats", held)
		}
	}
	if r.partial.Rejected > 0 || r.partial.Message != "" {
		if held, ok := s.logs.allow("partial", now); ok {
			s.logger.Warn("the node did not store some data points of a batch", "url", url,
				"rejected_data_points", r.partial.Rejected, "reason", r.partial.Message, "repeats", held)
		}
	}
	if s.failures > 0 && s.warned {
		s.logger.Info("exporting metrics again", "url", url, "failed_requests", s.failures,
			"down_for", now.Sub(s.since).Round(time.Millisecond), "queued", s.spool.Len())
	}
	s.failures, s.warned = 0, false
}

// rejected drops a batch the node refused for good, counts it, and logs
// at most one line per status a minute.
func (s *Sender) rejected(url string, seq uint64, r result) {
	now := s.now()
	if err := s.spool.Remove(seq); err != nil {
		s.noteError(err)
	}
	s.mu.Lock()
	s.stats.Rejected[r.status]++
	s.stats.LastError, s.stats.LastErrorTime = r.err, now
	s.mu.Unlock()
	if held, ok := s.logs.allow("status "+strconv.Itoa(r.status), now); ok {
		s.logger.Error("the node refused a metrics batch; it is dropped, its samples lost", "url", url,
			"status", r.status, "err", r.err, "also_dropped_since_last_log", held)
	}
}

// failed counts a request to be retried, and logs at most one line a
// minute of it (a link that flaps logs no more than one that is down).
func (s *Sender) failed(url string, r result, wait time.Duration) {
	now := s.now()
	s.mu.Lock()
	s.stats.Retries++
	s.stats.LastError, s.stats.LastErrorTime = r.err, now
	s.mu.Unlock()
	if s.failures == 0 {
		s.since = now
	}
	s.failures++
	if held, ok := s.logs.allow("failing", now); ok {
		s.warned = true
		s.logger.Warn("exporting metrics failed; the batches stay queued and are retried", "url", url,
			"status", r.status, "err", r.err, "retry_in", wait.Round(time.Millisecond),
			"failed_requests", s.failures, "failing_since", s.since, "queued", s.spool.Len(), "repeats", held)
	}
}

func (s *Sender) noteError(err error) {
	s.mu.Lock()
	s.stats.LastError, s.stats.LastErrorTime = err, s.now()
	s.mu.Unlock()
}

// pause waits d, or less if ctx ends or the target moves off from (a
// failover need not sit out the old node's backoff; "" waits it all).
func (s *Sender) pause(ctx context.Context, d time.Duration, from string) {
	t := time.NewTimer(d)
	defer t.Stop()
	poll := time.NewTicker(s.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-s.kick:
		case <-poll.C:
		}
		if from == "" {
			continue
		}
		if url, _, ok := s.cfg.Target(); ok && url != from {
			return
		}
	}
}

// idle waits for a Kick, Poll, or ctx to end.
func (s *Sender) idle(ctx context.Context) {
	t := time.NewTimer(s.cfg.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-s.kick:
	}
}

// logLimiter lets one log line per key through per interval, counting
// those it held back, so a failure repeated per batch is one line a
// minute, not thousands.
type logLimiter struct {
	every time.Duration
	last  map[string]time.Time
	held  map[string]int
}

// allow reports whether a line for key may be logged now, and how many
// were held back since the last one.
func (l *logLimiter) allow(key string, now time.Time) (held int, ok bool) {
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if last, seen := l.last[key]; seen && now.Sub(last) < l.every {
		l.held[key]++
		return 0, false
	}
	held = l.held[key]
	l.held[key], l.last[key] = 0, now
	return held, true
}
