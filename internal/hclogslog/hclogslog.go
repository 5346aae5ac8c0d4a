// Package hclogslog adapts log/slog to hashicorp/go-hclog, so the HashiCorp
// libraries Outpost embeds (raft, raft-wal, raft-autopilot) log through the
// node's injected slog.Logger with snake_case keys.
//
// Any package of Outpost's may import it.
package hclogslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// New returns an hclog.Logger writing to l. minLevel drops records below it
// before they reach slog, which keeps Raft's chatty trace output cheap.
// Raft retries an unreachable peer many times a second and logs each
// failure; a warning or error with the same message about the same peer
// is logged once a minute and demoted to debug in between.
func New(l *slog.Logger, name string, minLevel hclog.Level) hclog.Logger {
	return &logger{l: l.With("component", name), name: name, level: minLevel, repeats: &Writer{RepeatWindow: time.Minute}}
}

type logger struct {
	l       *slog.Logger
	name    string
	level   hclog.Level
	args    []interface{}
	repeats *Writer // shared by copies made with With and Named
}

// peerKeys name the arguments that identify whom a message is about.
var peerKeys = map[string]bool{"peer": true, "target": true, "server_id": true, "server-id": true, "id": true, "from": true}

var _ hclog.Logger = (*logger)(nil)

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (g *logger) Log(level hclog.Level, msg string, args ...interface{}) {
	if level < g.level && level != hclog.NoLevel {
		return
	}
	sl := toSlog(level)
	if sl >= slog.LevelWarn && closedConn(args) {
		// A connection closed by our own shutdown is not an operator's problem.
		sl = slog.LevelDebug
	}
	if sl >= slog.LevelWarn {
		key := msg
		for i := 0; i+1 < len(args); i += 2 {
			if k, ok := args[i].(string); ok && peerKeys[k] {
				key += fmt.Sprintf("|%v", args[i+1])
			}
		}
		if g.repeats.repeated(key) {
			sl = slog.LevelDebug
		}
	}
	if !g.l.Enabled(context.Background(), sl) {
		return
	}
	g.l.Log(context.Background(), sl, msg, snake(args)...)
}

func closedConn(args []interface{}) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, net.ErrClosed) {
			return true
		}
	}
	return false
}

// snake rewrites hclog's hyphenated keys ("last-index") to snake_case and
// renames "error" to "err", the project's key for errors.
func snake(args []interface{}) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i++ {
		if i%2 == 0 {
			k := fmt.Sprint(args[i])
			if k == "error" {
				k = "err"
			}
			out = append(out, strings.ReplaceAll(k, "-", "_"))
			continue
		}
		out = append(out, args[i])
	}
	if len(out)%2 == 1 {
		out = append(out, "(missing)")
	}
	return out
}

func (g *logger) Trace(msg string, args ...interface{}) { g.Log(hclog.Trace, msg, args...) }
func (g *logger) Debug(msg string, args ...interface{}) { g.Log(hclog.Debug, msg, args...) }
func (g *logger) Info(msg string, args ...interface{})  { g.Log(hclog.Info, msg, args...) }
func (g *logger) Warn(msg string, args ...interface{})  { g.Log(hclog.Warn, msg, args...) }
func (g *logger) Error(msg string, args ...interface{}) { g.Log(hclog.Error, msg, args...) }
func (g *logger) IsTrace() bool                         { return g.level <= hclog.Trace }
func (g *logger) IsDebug() bool                         { return g.level <= hclog.Debug }
func (g *logger) IsInfo() bool                          { return g.level <= hclog.Info }
func (g *logger) IsWarn() bool                          { return g.level <= hclog.Warn }
func (g *logger) IsError() bool                         { return g.level <= hclog.Error }
func (g *logger) ImpliedArgs() []interface{}            { return g.args }
func (g *logger) Name() string                          { return g.name }
func (g *logger) SetLevel(level hclog.Level)            { g.level = level }
func (g *logger) GetLevel() hclog.Level                 { return g.level }

func (g *logger) With(args ...interface{}) hclog.Logger {
	c := *g
	c.l = g.l.With(snake(args)...)
	c.args = append(append([]interface{}{}, g.args...), args...)
	return &c
}

func (g *logger) Named(name string) hclog.Logger {
	c := *g
	c.name = g.name + "." + name
	c.l = g.l.With("subcomponent", name)
	return &c
}

func (g *logger) ResetNamed(name string) hclog.Logger {
	c := *g
	c.name = name
	return &c
}

func (g *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(g.StandardWriter(opts), "", 0)
}

func (g *logger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &Writer{L: g.l, RepeatWindow: 5 * time.Minute}
}

// Writer turns lines written by a standard library *log.Logger (memberlist
// writes "[WARN] memberlist: ...") into slog records at the matching level.
// A warning or error that repeats (same text once digits are ignored, so a
// peer retrying from new ports counts as one) within RepeatWindow is
// demoted to debug: a misconfigured peer is reported, not logged in a loop.
type Writer struct {
	L            *slog.Logger
	RepeatWindow time.Duration

	mu   sync.Mutex
	seen map[string]time.Time
}

func (w *Writer) repeated(line string) bool {
	if w.RepeatWindow <= 0 {
		return false
	}
	key := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, line)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil || len(w.seen) > 1024 {
		w.seen = map[string]time.Time{}
	}
	now := time.Now()
	if t, ok := w.seen[key]; ok && now.Sub(t) < w.RepeatWindow {
		return true
	}
	w.seen[key] = now
	return false
}

func (w *Writer) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for tag, l := range map[string]slog.Level{"[TRACE]": slog.LevelDebug, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
		if i := strings.Index(line, tag); i >= 0 {
			level = l
			line = strings.TrimSpace(line[i+len(tag):])
			break
		}
	}
	if level >= slog.LevelWarn && w.repeated(line) {
		level = slog.LevelDebug
	}
	w.L.Log(context.Background(), level, line)
	return len(p), nil
}
