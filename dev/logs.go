package dev

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// chatter is the components whose lines are a region's ordinary traffic
// between nodes: elections, heartbeats, gossip probes, a peer's
// connection dropping as it stops. In dev mode they go to the log file in
// the data dir only; a person at the terminal reads the progress lines
// and Outpost's own warnings.
var chatter = []string{"raft", "raft-net", "raft-wal", "raft-snapshot", "raft-tls", "autopilot", "gossip"}

// splitHandler writes every record at the file's level to the file, and
// the warnings and errors of components other than chatter to the
// terminal too.
type splitHandler struct {
	file, term slog.Handler
	chatter    bool // this logger's component is chatter
}

func (h splitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.file.Enabled(ctx, l) || (!h.chatter && l >= slog.LevelWarn && h.term.Enabled(ctx, l))
}

func (h splitHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.file.Enabled(ctx, r.Level) {
		err = h.file.Handle(ctx, r.Clone())
	}
	if !h.chatter && r.Level >= slog.LevelWarn && h.term.Enabled(ctx, r.Level) {
		if terr := h.term.Handle(ctx, r); err == nil {
			err = terr
		}
	}
	return err
}

func (h splitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := h.chatter
	for _, a := range as {
		if a.Key == "component" && slices.Contains(chatter, a.Value.String()) {
			c = true
		}
	}
	return splitHandler{file: h.file.WithAttrs(as), term: h.term.WithAttrs(as), chatter: c}
}

func (h splitHandler) WithGroup(name string) slog.Handler {
	return splitHandler{file: h.file.WithGroup(name), term: h.term.WithGroup(name), chatter: h.chatter}
}

// LogFileName is where, in a dev region's data dir, its nodes log when
// Options.LogLevel is set.
const LogFileName = "outpost.log"

// openLog points the region's logger at DIR/outpost.log (at
// opts.LogLevel) with opts.Logger, the terminal, keeping Outpost's own
// warnings and errors.
func (d *Region) openLog() error {
	if d.opts.LogLevel == "" {
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(d.opts.LogLevel)); err != nil {
		return err
	}
	f, err := os.OpenFile(d.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	d.logFile = f
	d.opts.Logger = slog.New(splitHandler{file: slog.NewTextHandler(f, &slog.HandlerOptions{Level: level}), term: d.opts.Logger.Handler()})
	return nil
}

// logPath is the log file, or "" without one.
func (d *Region) logPath() string {
	if d.logFile == nil {
		return ""
	}
	return d.LogFile()
}

// LogFile is the nodes' log file (with Options.LogLevel set).
func (d *Region) LogFile() string { return filepath.Join(d.dataDir, LogFileName) }
