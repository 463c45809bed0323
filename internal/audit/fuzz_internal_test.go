package audit

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzRotatedName: every name the writer gives a rotated file, of a log
// with any file name, parses back (plain and gzipped) to that log's stem
// and extension and to the seq, so that listRotated finds exactly the
// files the writer made.
func FuzzRotatedName(f *testing.F) {
	f.Add("audit.jsonl", uint64(1), int64(0))
	f.Add("audit", uint64(42), int64(1e9))
	f.Add(".audit", uint64(1<<63), int64(-1e12))
	f.Add("a-00000000000000000001-20260101T000000Z.jsonl", uint64(7), int64(5))
	f.Add("audit.gz.jsonl", uint64(3), int64(0))
	f.Fuzz(func(t *testing.T, base string, seq uint64, unix int64) {
		if base == "" || base == "." || base == ".." || strings.ContainsAny(base, "/\x00") || strings.HasSuffix(base, ".gz") || strings.HasSuffix(base, ".") {
			return // not a log file name (config; a log named *.gz is not supported)
		}
		ts := time.Unix(unix%(1<<34), 0)
		if y := ts.UTC().Year(); y < 1000 || y > 9999 {
			return
		}
		path := filepath.Join("dir", base)
		stem, ext := splitName(path)
		name := rotatedName(path, seq, ts)
		for _, n := range []string{name, name + ".gz"} {
			s, x, r, ok := parseRotated(n)
			if !ok || s != stem || x != ext || r.seq != seq || r.plain != name || r.gz != (n != name) {
				t.Fatalf("log %q: %q parses as ok=%v (%q, %q, %+v)", base, n, ok, s, x, r)
			}
		}
	})
}
