// Package logging builds the process logger from the logging section.
package logging

import (
	"io"
	"log/slog"
	"strings"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

// New returns a logger writing JSON (production) or text (demo, terminals)
// at the configured level.
func New(cfg config.Logging, w io.Writer) (*slog.Logger, error) {
	level, err := config.ParseLevel(cfg.Level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.Format, "text") {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}
