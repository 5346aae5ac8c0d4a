// Package hclogslog adapts log/slog to hashicorp/go-hclog, so the HashiCorp
// libraries Outpost embeds (raft, raft-wal, raft-autopilot) log through the
// node's injected slog.Logger with snake_case keys.
//
// What the libraries pass is made into values a log tool can read:
// hashicorp/raft's Server becomes a group (id, address, suffrage), a list
// of servers and hclog.Fmt values become plain strings, a *raft.Raft (the
// library describing itself) becomes raft_state, and other fmt.Stringers
// their String(), never a Go struct dump. Keys appear once per line: the
// logger's implied arguments give way to a call's own of the same name,
// and an argument named like a key the line already carries (slog's time,
// level, msg and source; component, subcomponent; node, which the node's
// logger carries) is renamed (see argKey).
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
	hraft "github.com/hashicorp/raft"
)

// New returns an hclog.Logger writing to l. minLevel drops records below it
// before they reach slog, which keeps Raft's chatty trace output cheap.
// Raft retries an unreachable peer many times a second and logs each
// failure; a warning or error with the same message about the same peer
// is logged once a minute and demoted to debug in between.
func New(l *slog.Logger, name string, minLevel hclog.Level) hclog.Logger {
	root := l.With("component", name)
	return &logger{root: root, l: root, name: name, level: minLevel, repeats: &Writer{RepeatWindow: time.Minute}}
}

type logger struct {
	root *slog.Logger // l's parent before any Named: carries component
	l    *slog.Logger // root and, once Named, subcomponent
	name string
	sub  string // Named's names, joined by "."
	// args are the implied arguments (With), applied at each call so a
	// call's own argument of the same key replaces them.
	args    []interface{}
	level   hclog.Level
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
	g.l.LogAttrs(context.Background(), sl, msg, attrs(g.args, args)...)
}

func closedConn(args []interface{}) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, net.ErrClosed) {
			return true
		}
	}
	return false
}

// reservedKeys are keys a line already carries, so an argument of the
// same name would repeat them: slog's own, the ones New and Named add,
// and the node's logger's "node".
var reservedKeys = map[string]bool{
	slog.TimeKey: true, slog.LevelKey: true, slog.MessageKey: true, slog.SourceKey: true,
	"component": true, "subcomponent": true, "node": true,
}

// argKey is the slog key of an hclog argument key: snake_case ("last-index"
// and "backoff time" become last_index and backoff_time), "error" is "err"
// (the project's key for errors), and a reserved key is renamed: "time"
// holding a duration (raft's "failed to contact") is "elapsed", others
// get an "arg_" prefix.
func argKey(k string, v any) string {
	k = strings.NewReplacer("-", "_", " ", "_").Replace(k)
	switch {
	case k == "error":
		return "err"
	case !reservedKeys[k]:
		return k
	}
	if _, ok := v.(time.Duration); ok && k == slog.TimeKey {
		return "elapsed"
	}
	return "arg_" + k
}

// attrs turns implied and call arguments into slog attributes, each key
// once: a later argument replaces an earlier one of the same key.
func attrs(implied, args []interface{}) []slog.Attr {
	all := make([]interface{}, 0, len(implied)+len(args)+1)
	all = append(append(all, implied...), args...)
	if len(all)%2 == 1 {
		all = append(all, "(missing)")
	}
	out := make([]slog.Attr, 0, len(all)/2)
	at := make(map[string]int, len(all)/2)
	for i := 0; i < len(all); i += 2 {
		a := attr(fmt.Sprint(all[i]), all[i+1])
		if j, ok := at[a.Key]; ok {
			out[j] = a
			continue
		}
		at[a.Key] = len(out)
		out = append(out, a)
	}
	return out
}

// attr renders one argument as a value a log tool reads: no Go struct
// dumps (%+v in text, Go field names in JSON).
func attr(key string, v any) slog.Attr {
	switch v := v.(type) {
	case *hraft.Raft:
		// raft logs itself as "Node at ADDR [STATE]" under "node",
		// "leader" or "follower": the node is the logger's, the state is
		// what is news.
		return slog.String("raft_state", strings.ToLower(v.State().String()))
	case hraft.Server:
		return slog.Attr{Key: argKey(key, v), Value: serverValue(v)}
	case []hraft.Server:
		return slog.String(argKey(key, v), servers(v))
	case hclog.Format:
		return slog.String(argKey(key, v), format(v))
	}
	return slog.Attr{Key: argKey(key, v), Value: value(v)}
}

// value is v as slog should print it.
func value(v any) slog.Value {
	switch v := v.(type) {
	case error, time.Duration, time.Time:
		return slog.AnyValue(v)
	case hraft.ServerID:
		return slog.StringValue(string(v))
	case hraft.ServerAddress:
		return slog.StringValue(string(v))
	case hraft.ServerSuffrage:
		return slog.StringValue(suffrage(v))
	case hclog.Hex:
		return slog.StringValue(fmt.Sprintf("0x%x", int(v)))
	case hclog.Octal:
		return slog.StringValue(fmt.Sprintf("0%o", int(v)))
	case hclog.Binary:
		return slog.StringValue(fmt.Sprintf("0b%b", int(v)))
	case fmt.Stringer:
		return slog.StringValue(v.String())
	}
	return slog.AnyValue(v)
}

func anys(as []slog.Attr) []any {
	out := make([]any, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}

func serverValue(s hraft.Server) slog.Value {
	return slog.GroupValue(slog.String("id", string(s.ID)), slog.String("address", string(s.Address)), slog.String("suffrage", suffrage(s.Suffrage)))
}

func suffrage(s hraft.ServerSuffrage) string { return strings.ToLower(s.String()) }

// servers is a Raft configuration in one line: "n1 127.0.0.1:7001 voter,
// n2 127.0.0.1:7002 nonvoter".
func servers(ss []hraft.Server) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = fmt.Sprintf("%s %s %s", s.ID, s.Address, suffrage(s.Suffrage))
	}
	return strings.Join(parts, ", ")
}

// format renders hclog.Fmt. Raft formats its configuration with %+v
// (hclog.Fmt("%+v", servers)); that one is written as servers writes it.
func format(f hclog.Format) string {
	if len(f) == 0 {
		return ""
	}
	verb, ok := f[0].(string)
	if !ok {
		return fmt.Sprint(f...)
	}
	if len(f) == 2 {
		if ss, ok := f[1].([]hraft.Server); ok {
			return servers(ss)
		}
	}
	return fmt.Sprintf(verb, f[1:]...)
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
	c.args = append(append([]interface{}{}, g.args...), args...)
	return &c
}

// Named adds name to the subcomponent ("snapshot", then "snapshot.restore"):
// one subcomponent key, however often it is called.
func (g *logger) Named(name string) hclog.Logger {
	c := *g
	c.name = g.name + "." + name
	c.sub = name
	if g.sub != "" {
		c.sub = g.sub + "." + name
	}
	c.l = g.root.With("subcomponent", c.sub)
	return &c
}

// ResetNamed drops the subcomponent; the component stays New's.
func (g *logger) ResetNamed(name string) hclog.Logger {
	c := *g
	c.name, c.sub, c.l = name, "", g.root
	return &c
}

func (g *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(g.StandardWriter(opts), "", 0)
}

func (g *logger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	l := g.l
	if len(g.args) > 0 {
		as := attrs(g.args, nil)
		l = l.With(anys(as)...)
	}
	return &Writer{L: l, RepeatWindow: 5 * time.Minute}
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
