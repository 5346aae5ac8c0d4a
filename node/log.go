package node

import (
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/outpost-mesh/outpost/internal/hclogslog"
)

// NewLogger builds the node's structured logger from its log config.
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func slogStd(l *slog.Logger) *log.Logger {
	return log.New(&hclogslog.Writer{L: l.With("component", "http"), RepeatWindow: time.Minute}, "", 0)
}
