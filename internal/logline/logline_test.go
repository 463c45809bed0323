package logline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/logline"
)

// same writes r through logline's handler and through slog's own handler
// (same format and options) and fails unless the bytes are equal.
func same(t *testing.T, json bool, opts *slog.HandlerOptions, r slog.Record) string {
	t.Helper()
	var got, want bytes.Buffer
	if err := logline.New(&got, json, opts).Handle(context.Background(), r.Clone()); err != nil {
		t.Fatalf("logline: %v", err)
	}
	var ref slog.Handler = slog.NewTextHandler(&want, opts)
	if json {
		ref = slog.NewJSONHandler(&want, opts)
	}
	if err := ref.Handle(context.Background(), r.Clone()); err != nil {
		t.Fatalf("slog: %v", err)
	}
	if got.String() != want.String() {
		t.Fatalf("json=%v\n got %q\nwant %q", json, got.String(), want.String())
	}
	return got.String()
}

func record(t time.Time, level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("v") }

func TestSameBytesAsSlog(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 30, 45, 120_000_000, time.UTC)
	east := time.FixedZone("X", 5*3600+30*60)
	access := []slog.Attr{slog.String("method", "/tokenvault.v1.TokenVault/Detokenize"),
		slog.String("request_id", "4f2a9c01be77"), slog.String("caller", "orders"),
		slog.String("code", "OK"), slog.Duration("duration", 1234567*time.Nanosecond)}
	cases := []struct {
		name string
		r    slog.Record
	}{
		{"access line", record(at, slog.LevelInfo, "rpc", access...)},
		{"access line at debug", record(at, slog.LevelDebug, "rpc", access...)},
		{"no caller (empty attr elided)", record(at, slog.LevelInfo, "rpc", slog.String("method", "/m"), slog.Attr{}, slog.String("code", "OK"))},
		{"empty caller", record(at, slog.LevelInfo, "rpc", slog.String("caller", ""))},
		{"failure message with spaces", record(at, slog.LevelInfo, "rpc", slog.String("error", "tokens[0]: not found"))},
		{"quote, equals, backslash", record(at, slog.LevelWarn, "m", slog.String("a", `x"y`), slog.String("b", "k=v"), slog.String("c", `p\q`))},
		{"backslash alone (slog's text does not quote it)", record(at, slog.LevelInfo, "m", slog.String("path", `C:\tv\data`))},
		{"JSON-only plain: space, <, >, &", record(at, slog.LevelInfo, "a b", slog.String("a", "<x> & y"))},
		{"control characters", record(at, slog.LevelInfo, "m", slog.String("a", "x\ny\t\x01\x7f"))},
		{"non-ASCII", record(at, slog.LevelInfo, "m", slog.String("a", "café"), slog.String("b", "\xff"))},
		{"non-ASCII key", record(at, slog.LevelInfo, "m", slog.String("ké", "v"))},
		{"empty key", record(at, slog.LevelInfo, "m", slog.Int("", 0))},
		{"empty message", record(at, slog.LevelInfo, "")},
		{"message with space", record(at, slog.LevelError, "store GC failed")},
		{"numbers and bools", record(at, slog.LevelInfo, "m", slog.Int("i", -42), slog.Uint64("u", 1<<63), slog.Bool("ok", true))},
		{"durations", record(at, slog.LevelInfo, "m", slog.Duration("ns", 7), slog.Duration("us", 1500*time.Nanosecond),
			slog.Duration("zero", 0), slog.Duration("h", 90*time.Minute), slog.Duration("neg", -time.Millisecond))},
		{"odd level", record(at, slog.LevelInfo+2, "m")},
		{"zero time", record(time.Time{}, slog.LevelInfo, "m", slog.String("a", "b"))},
		{"whole milliseconds", record(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), slog.LevelInfo, "m")},
		{"time zone", record(at.In(east), slog.LevelInfo, "m")},
		{"monotonic clock reading", record(time.Now(), slog.LevelInfo, "m")},
		{"year 10000", record(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m")},
		{"group", record(at, slog.LevelInfo, "m", slog.Group("g", slog.String("a", "b")))},
		{"time value", record(at, slog.LevelInfo, "m", slog.Time("t", at))},
		{"float", record(at, slog.LevelInfo, "m", slog.Float64("f", 1.5))},
		{"any", record(at, slog.LevelInfo, "m", slog.Any("e", errors.New("boom")))},
		{"LogValuer", record(at, slog.LevelInfo, "m", slog.Any("v", valuer{}))},
		{"many attributes", record(at, slog.LevelInfo, "m", slog.String("a1", "1"), slog.String("a2", "2"), slog.String("a3", "3"),
			slog.String("a4", "4"), slog.String("a5", "5"), slog.String("a6", "6"), slog.String("a7", "7"))},
		{"long value", record(at, slog.LevelInfo, "m", slog.String("a", strings.Repeat("x", 40<<10)))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			same(t, false, nil, c.r)
			same(t, true, nil, c.r)
			same(t, false, &slog.HandlerOptions{Level: slog.LevelDebug}, c.r)
		})
	}
	t.Run("options that change the output", func(t *testing.T) {
		drop := func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "caller" {
				return slog.Attr{}
			}
			return a
		}
		for _, json := range []bool{false, true} {
			r := record(at, slog.LevelInfo, "rpc", access...)
			line := same(t, json, &slog.HandlerOptions{ReplaceAttr: drop}, r)
			if strings.Contains(line, "caller") {
				t.Fatalf("ReplaceAttr was not applied: %q", line)
			}
			// AddSource with a zero pc prints an empty source; the point
			// is that slog decides.
			same(t, json, &slog.HandlerOptions{AddSource: true}, r)
		}
	})
	t.Run("the access line is written by the fast path", func(t *testing.T) {
		// Exactly what slog writes, pinned, so that a change in slog's
		// format shows here and not only as a mismatch.
		want := "time=2026-12-03T12:30:45.120Z level=INFO msg=rpc method=/tokenvault.v1.TokenVault/Detokenize request_id=4f2a9c01be77 caller=orders code=OK duration=1.234567ms\n"
		if got := same(t, false, nil, record(at, slog.LevelInfo, "rpc", access...)); got != want {
			t.Fatalf("got %q\nwant %q", got, want)
		}
		want = `{"time":"2026-12-03T12:30:45.12Z","level":"INFO","msg":"rpc","method":"/tokenvault.v1.TokenVault/Detokenize","request_id":"4f2a9c01be77","caller":"orders","code":"OK","duration":1234567}` + "\n"
		if got := same(t, true, nil, record(at, slog.LevelInfo, "rpc", access...)); got != want {
			t.Fatalf("got %q\nwant %q", got, want)
		}
		h := logline.New(io.Discard, false, nil)
		allocs := testing.AllocsPerRun(200, func() {
			h.Handle(context.Background(), record(at, slog.LevelInfo, "rpc", access...))
		})
		// The duration's String is the one allocation of the line.
		if allocs > 1 {
			t.Fatalf("%v allocations per line", allocs)
		}
	})
}

// TestDerivedHandlers: WithAttrs and WithGroup give slog's handler, which
// writes to the same writer.
func TestDerivedHandlers(t *testing.T) {
	var got, want bytes.Buffer
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	l := slog.New(logline.New(&got, false, nil)).With("component", "badger").WithGroup("g")
	r := slog.New(slog.NewTextHandler(&want, nil)).With("component", "badger").WithGroup("g")
	for _, lg := range []*slog.Logger{l, r} {
		lg.Handler().Handle(context.Background(), record(at, slog.LevelInfo, "m", slog.String("a", "b")))
	}
	if got.String() != want.String() {
		t.Fatalf("got %q\nwant %q", got.String(), want.String())
	}
}

// TestConcurrentLinesStayWhole: the fast path and slog's handler (a
// failure's line, a derived handler) share one writer; no line is torn.
func TestConcurrentLinesStayWhole(t *testing.T) {
	var buf bytes.Buffer // not safe for concurrent use: the handler's lock is what protects it
	h := logline.New(&buf, false, nil)
	derived := h.WithAttrs([]slog.Attr{slog.String("component", "x")})
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				switch i % 3 {
				case 0:
					h.Handle(context.Background(), record(at, slog.LevelInfo, "rpc", slog.Int("w", w), slog.Int("i", i)))
				case 1:
					h.Handle(context.Background(), record(at, slog.LevelInfo, "rpc", slog.String("error", "a b"), slog.Int("w", w), slog.Int("i", i)))
				default:
					derived.Handle(context.Background(), record(at, slog.LevelInfo, "rpc", slog.Int("w", w), slog.Int("i", i)))
				}
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != workers*each {
		t.Fatalf("%d lines, want %d", len(lines), workers*each)
	}
	seen := map[string]bool{}
	for _, ln := range lines {
		var w, i int
		j := strings.Index(ln, " w=")
		if j < 0 || !strings.HasPrefix(ln, "time=2026-12-03T00:00:00.000Z level=INFO msg=rpc ") {
			t.Fatalf("torn line %q", ln)
		}
		if _, err := fmt.Sscanf(ln[j:], " w=%d i=%d", &w, &i); err != nil {
			t.Fatalf("torn line %q: %v", ln, err)
		}
		seen[fmt.Sprint(w, i)] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct lines, want %d", len(seen), workers*each)
	}
}

// FuzzSameBytesAsSlog: for any message, key, values and time, the handler
// writes what slog's handler writes.
func FuzzSameBytesAsSlog(f *testing.F) {
	f.Add("rpc", "method", "/tokenvault.v1.TokenVault/Tokenize", "OK", int64(1234567), int64(1764765045120000000), int8(0), false)
	f.Add("", "", "", "", int64(0), int64(0), int8(4), true)
	f.Add("a b", "k=v", "x\"y", "café", int64(-1), int64(-62135596800000000), int8(-4), true)
	f.Add("m", "k", "\x00\n\\", "\xff", int64(1<<62), int64(253402300800000000), int8(8), false)
	f.Fuzz(func(t *testing.T, msg, key, s1, s2 string, d, unixNano int64, level int8, json bool) {
		at := time.Unix(0, unixNano).UTC()
		if unixNano%3 == 0 {
			at = at.In(time.FixedZone("Z1", int(unixNano%50000)))
		}
		r := record(at, slog.Level(level), msg, slog.String(key, s1), slog.String("b", s2),
			slog.Duration(key+"d", time.Duration(d)), slog.Int64("n", d))
		same(t, json, nil, r)
	})
}

// The access line alone, to io.Discard: slog's text handler against this
// one (go test -bench Line ./internal/logline).
func BenchmarkLine(b *testing.B) {
	access := []slog.Attr{slog.String("method", "/tokenvault.v1.TokenVault/Detokenize"),
		slog.String("request_id", "4f2a9c01be77"), slog.String("caller", "orders"),
		slog.String("code", "OK"), slog.Duration("duration", 1234567*time.Nanosecond)}
	for _, c := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog-text", slog.NewTextHandler(io.Discard, nil)},
		{"logline-text", logline.New(io.Discard, false, nil)},
		{"slog-json", slog.NewJSONHandler(io.Discard, nil)},
		{"logline-json", logline.New(io.Discard, true, nil)},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "rpc", 0)
				r.AddAttrs(access...)
				c.h.Handle(ctx, r)
			}
		})
	}
}
