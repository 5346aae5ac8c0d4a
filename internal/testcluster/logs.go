package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logs keeps every record a node logged, so a test can assert on them;
// records at Info and above also go to t.Log (shown when a test fails, or
// with -v).
type Logs struct {
	mu   sync.Mutex
	recs []string
}

// Count is the number of records at level whose text contains substr.
func (c *Logs) Count(level slog.Level, substr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.recs {
		if strings.HasPrefix(r, level.String()+" ") && strings.Contains(r, substr) {
			n++
		}
	}
	return n
}

// Logger returns a logger that writes to c and, until the test's
// cleanups run, to t.Log: a node's background goroutines (memberlist's
// probes outlive its Shutdown) may log after the test ended, and t.Log
// then races with the testing package.
func (c *Logs) Logger(t testing.TB) *slog.Logger {
	g := &tGate{}
	t.Cleanup(func() {
		g.mu.Lock()
		g.ended = true
		g.mu.Unlock()
	})
	return slog.New(&teeHandler{t: t, c: c, g: g})
}

// tGate stops logging to a test once its cleanups run.
type tGate struct {
	mu    sync.Mutex
	ended bool
}

type teeHandler struct {
	t     testing.TB
	c     *Logs
	g     *tGate
	attrs []slog.Attr
}

func (h *teeHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *teeHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	line := b.String()
	h.c.mu.Lock()
	h.c.recs = append(h.c.recs, line)
	h.c.mu.Unlock()
	if r.Level >= slog.LevelInfo {
		h.g.mu.Lock()
		defer h.g.mu.Unlock()
		if !h.g.ended {
			h.t.Log(line)
		}
	}
	return nil
}
func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &teeHandler{t: h.t, c: h.c, g: h.g, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h *teeHandler) WithGroup(string) slog.Handler { return h }
