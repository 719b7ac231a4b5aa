package testutil

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// JSONLogger returns a logger that writes JSON lines at debug level to w
// (normally a *Buffer), as the adapter logs in production.
func JSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TextLogger returns a logger that writes key=value lines at debug level to
// w (normally a *Buffer).
func TextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// JSONLines decodes the JSON log lines of text, one map per non-empty
// line. A line that is not a JSON object fails t; its text is not shown,
// since a log line may hold what a test looks for in vain.
func JSONLines(t testing.TB, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %d (%d bytes) is not a JSON object: %v", i+1, len(l), err)
		}
		out = append(out, m)
	}
	return out
}
