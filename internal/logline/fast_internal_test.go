package logline

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestFastPathTaken: the records the server writes on every call take the
// fast path (the byte-for-byte tests pass whichever path writes, so they
// would not notice a fast path that never runs), and the others do not.
func TestFastPathTaken(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 30, 45, 0, time.UTC)
	access := []slog.Attr{slog.String("method", "/tokenvault.v1.TokenVault/Tokenize"),
		slog.String("request_id", "4f2a9c01be77"), slog.String("caller", "orders"),
		slog.String("code", "OK"), slog.Duration("duration", 1500*time.Nanosecond)}
	cases := []struct {
		name       string
		msg        string
		attrs      []slog.Attr
		text, json bool // fast path expected
	}{
		{"access line", "rpc", access, true, true},
		{"access line without caller", "rpc", []slog.Attr{access[0], access[1], {}, access[3], access[4]}, true, true},
		{"numbers", "audit checkpoint", []slog.Attr{slog.Uint64("seq", 7), slog.Bool("ok", true)}, false, true},
		{"numbers, plain message", "checkpoint", []slog.Attr{slog.Uint64("seq", 7), slog.Int("n", -1)}, true, true},
		{"failure message", "rpc", []slog.Attr{slog.String("error", "tokens[0]: not found")}, false, true},
		{"quote", "rpc", []slog.Attr{slog.String("error", `a"b`)}, false, false},
		{"non-ASCII", "rpc", []slog.Attr{slog.String("a", "é")}, false, false},
		{"group", "rpc", []slog.Attr{slog.Group("g", slog.Int("a", 1))}, false, false},
		{"any", "rpc", []slog.Attr{slog.Any("a", struct{}{})}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, json := range []bool{false, true} {
				r := slog.NewRecord(at, slog.LevelInfo, c.msg, 0)
				r.AddAttrs(c.attrs...)
				_, ok := New(io.Discard, json, nil).(*handler).appendRecord(nil, r)
				if want := map[bool]bool{false: c.text, true: c.json}[json]; ok != want {
					t.Errorf("json=%v: fast path %v, want %v", json, ok, want)
				}
			}
		})
	}
	r := slog.NewRecord(at, slog.LevelInfo, "rpc", 0)
	r.AddAttrs(access...)
	if h := New(io.Discard, false, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }}).(*handler); h.fast {
		t.Error("fast path on with ReplaceAttr")
	}
}
