package audit_test

import (
	"bytes"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// FuzzParseLine: any line ParseLine accepts re-encodes to exactly the same
// bytes (one canonical form), and entries built from arbitrary strings
// survive Line → ParseLine unchanged.
func FuzzParseLine(f *testing.F) {
	e := entry(7)
	e.Seq, e.Time, e.Prev = 7, "2026-01-02T03:04:05.123Z", audit.ZeroHash
	line, _ := e.Line()
	f.Add(line, "payment", "tvk_x", "c-1", uint64(3))
	f.Add([]byte(`{"seq":1,"prev":"","hash":"00"}`), "<&>\u2028", "", "\xff", uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, purpose, caller, subject string, seq uint64) {
		if e, err := audit.ParseLine(b); err == nil {
			again, err := e.Line()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.TrimSuffix(again, []byte("\n")), bytes.TrimSuffix(b, []byte("\n"))) {
				t.Fatalf("accepted %q but re-encodes as %q", b, again)
			}
		}
		in := audit.Entry{Seq: seq, Time: "t", Type: audit.TypeCall, Caller: caller, Purpose: purpose,
			Subject: subject, Outcome: "OK", Prev: audit.ZeroHash,
			Items: []audit.Item{{Token: caller, Subject: subject, Context: purpose, Outcome: "NotFound"}}}
		line, err := in.Line()
		if err != nil {
			t.Fatal(err)
		}
		out, err := audit.ParseLine(line)
		if err != nil {
			t.Fatalf("own line %q rejected: %v", line, err)
		}
		// Line sanitized in (invalid UTF-8 → U+FFFD) and set its hash.
		if !utf8.ValidString(in.Purpose+in.Caller+in.Subject) || !reflect.DeepEqual(in, out) {
			t.Fatalf("round trip: %+v != %+v", in, out)
		}
	})
}
