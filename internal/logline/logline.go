// Package logline is the server log's slog handler: slog's own text or
// JSON handler, with a fast path for the lines the server writes on every
// call (the access line, internal/grpcserver logCall).
//
// Why not slog alone: its generic attribute walk (handle state, quoting
// checks of every key, a pooled buffer, reflection-free but general
// dispatch) is most of the user-space instructions an access line costs,
// and the line is written for every call. The fast path writes the same
// bytes slog would for a record whose message, keys and values need no
// quoting or escaping and whose values are strings, integers, booleans or
// durations; any other record (a failure's message with spaces, a group, a
// value that needs escaping, a handler option that changes the output) goes
// to slog's handler unchanged. The tests compare the two byte for byte.
package logline

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// handler is slog's text or JSON handler with the fast path. Handlers
// derived from it (WithAttrs, WithGroup) are slog's own: they write to the
// same writer, under the same lock, without the fast path.
type handler struct {
	slog.Handler // slog's handler, writing through w
	w            *lockedWriter
	json         bool
	fast         bool // the options leave slog's output as the fast path writes it
}

var _ slog.Handler = (*handler)(nil)

// New returns a handler writing to w: slog's JSON handler if json is set,
// its text handler otherwise, with opts (nil: slog's defaults).
func New(w io.Writer, json bool, opts *slog.HandlerOptions) slog.Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	lw := &lockedWriter{w: w}
	h := &handler{w: lw, json: json, fast: opts.ReplaceAttr == nil && !opts.AddSource}
	if json {
		h.Handler = slog.NewJSONHandler(lw, opts)
	} else {
		h.Handler = slog.NewTextHandler(lw, opts)
	}
	return h
}

// lockedWriter serializes the fast path's writes with slog's: slog's
// handler locks its own mutex, which the fast path cannot reach, so both
// write through this one. A line is one Write either way.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Handle writes r: by the fast path if it can, by slog's handler
// otherwise. Level filtering is the caller's (slog.Logger asks Enabled
// first), as for slog's handlers.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if h.fast {
		bp := bufs.Get().(*[]byte)
		if b, ok := h.appendRecord((*bp)[:0], r); ok {
			_, err := h.w.Write(b)
			*bp = b
			putBuf(bp)
			return err
		}
		putBuf(bp)
	}
	return h.Handler.Handle(ctx, r)
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxKeptBuf: a buffer that one long line grew is not kept.
const maxKeptBuf = 16 << 10

func putBuf(bp *[]byte) {
	if cap(*bp) <= maxKeptBuf {
		bufs.Put(bp)
	}
}

// appendRecord appends r's line as slog's handler writes it, or reports
// false if r needs something only slog's handler does.
func (h *handler) appendRecord(b []byte, r slog.Record) ([]byte, bool) {
	sep := ""
	if h.json {
		b = append(b, '{')
	}
	if !r.Time.IsZero() {
		t := r.Time.Round(0) // as slog: no monotonic reading
		b = h.appendKey(b, sep, slog.TimeKey)
		if h.json {
			if y := t.Year(); y < 0 || y >= 10000 {
				return b, false // slog writes an error value instead
			}
			b = append(b, '"')
			b = t.AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		} else {
			b = appendRFC3339Millis(b, t)
		}
		sep = h.attrSep()
	}
	lv := r.Level.String()
	if !h.plain(lv) || !h.plain(r.Message) {
		return b, false
	}
	b = h.appendKey(b, sep, slog.LevelKey)
	b = h.appendString(b, lv)
	sep = h.attrSep()
	b = h.appendKey(b, sep, slog.MessageKey)
	b = h.appendString(b, r.Message)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = h.appendAttr(b, sep, a)
		return ok
	})
	if !ok {
		return b, false
	}
	if h.json {
		b = append(b, '}')
	}
	return append(b, '\n'), true
}

func (h *handler) attrSep() string {
	if h.json {
		return ","
	}
	return " "
}

// appendAttr appends a (after sep), or reports false for an attribute the
// fast path does not write as slog would.
func (h *handler) appendAttr(b []byte, sep string, a slog.Attr) ([]byte, bool) {
	if a.Equal(slog.Attr{}) {
		return b, true // slog elides empty attributes
	}
	if !h.plain(a.Key) {
		return b, false
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if !h.plain(s) {
			return b, false
		}
		b = h.appendKey(b, sep, a.Key)
		return h.appendString(b, s), true
	case slog.KindInt64:
		b = h.appendKey(b, sep, a.Key)
		return strconv.AppendInt(b, v.Int64(), 10), true
	case slog.KindUint64:
		b = h.appendKey(b, sep, a.Key)
		return strconv.AppendUint(b, v.Uint64(), 10), true
	case slog.KindBool:
		b = h.appendKey(b, sep, a.Key)
		return strconv.AppendBool(b, v.Bool()), true
	case slog.KindDuration:
		b = h.appendKey(b, sep, a.Key)
		if h.json {
			return strconv.AppendInt(b, int64(v.Duration()), 10), true // as json.Marshal
		}
		return append(b, v.Duration().String()...), true // unquoted, as slog's text handler
	default: // times, groups, LogValuers, any: slog's handler
		return b, false
	}
}

func (h *handler) appendKey(b []byte, sep, key string) []byte {
	b = append(b, sep...)
	b = h.appendString(b, key)
	if h.json {
		return append(b, ':')
	}
	return append(b, '=')
}

// appendString appends a string that plain accepted.
func (h *handler) appendString(b []byte, s string) []byte {
	if h.json {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	return append(b, s...)
}

// plain reports whether s is written as is: in text, non-empty printable
// ASCII without space, '=' or '"' (slog quotes those); in JSON, printable
// ASCII (space included) without '"' or '\' (slog escapes those). Anything
// outside ASCII goes to slog, which knows its Unicode rules.
func (h *handler) plain(s string) bool {
	if h.json {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	if s == "" {
		return false // slog writes ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c > 0x7e || c == '=' || c == '"' {
			return false
		}
	}
	return true
}

// appendRFC3339Millis is slog's text time format (its own function of this
// name): RFC 3339 with exactly three fractional digits.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// RFC3339Nano trims trailing zeros: add 1/10 ms so that there are
	// exactly four fractional digits, then drop the fourth.
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}
