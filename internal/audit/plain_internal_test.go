package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// jsonBody is the reference encoding: what appendBody wrote for every
// entry before appendPlain, and what earlier lines on disk were written
// with.
func jsonBody(t testing.TB, e *Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// every member of Entry and Item set (and each one alone), the numbers
// at their edges: appendPlain writes what encoding/json writes.
func TestPlainMatchesJSON(t *testing.T) {
	all := Entry{Seq: math.MaxUint64, Time: "2026-01-01T00:00:00.123456Z", Type: TypeCall, Replica: "r1",
		Caller: "api_key:payments", Auth: "api_key", Peer: "127.0.0.1:5000", Op: "detokenize",
		Method: "/tokenvault.v1.TokenVault/Detokenize", Purpose: "pay <&> ment", OriginCaller: "oc",
		OriginReplica: "or", Subject: "s", SubjectHash: "sh", Outcome: "OK", Reason: "r", Kind: "pan",
		Items:        []Item{{Token: "t", Kind: "k", Subject: "s", SubjectHash: "h", Context: "c", Outcome: "o"}, {}, {Outcome: "NotFound"}},
		ItemsOmitted: -3, Count: 9, Since: "2026", Recipients: []string{"age1x", "", "age1y"}, File: "f",
		CheckpointSeq: 1, KeyID: "kid", Sig: "sig/+=", Prev: ZeroHash, Hash: "not encoded"}
	cases := map[string]Entry{"zero": {}, "all": all, "empty slices": {Items: []Item{}, Recipients: []string{}},
		"full form": fullEntry(), "negative omitted": {ItemsOmitted: math.MinInt}}
	for _, name := range []string{"Replica", "Caller", "Auth", "Peer", "Op", "Method", "Purpose", "OriginCaller",
		"OriginReplica", "Subject", "SubjectHash", "Outcome", "Reason", "Kind", "Since", "File", "KeyID", "Sig"} {
		e := Entry{Seq: 1, Prev: ZeroHash}
		setString(&e, name, "x")
		cases["only "+name] = e
	}
	for _, it := range []Item{{Token: "t"}, {Kind: "k"}, {Subject: "s"}, {SubjectHash: "h"}, {Context: "c"}, {Outcome: "o"}, {Kind: "k", Outcome: "o"}} {
		cases["item "+string(jsonBody(t, &Entry{Items: []Item{it}}))] = Entry{Items: []Item{it}}
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			if !e.plain() {
				t.Fatal("not plain")
			}
			if got, want := e.appendPlain(nil), jsonBody(t, &e); !bytes.Equal(got, want) {
				t.Fatalf("appendPlain:\n%s\nencoding/json:\n%s", got, want)
			}
		})
	}
}

func setString(e *Entry, name, v string) {
	for _, f := range []struct {
		n string
		p *string
	}{{"Replica", &e.Replica}, {"Caller", &e.Caller}, {"Auth", &e.Auth}, {"Peer", &e.Peer}, {"Op", &e.Op},
		{"Method", &e.Method}, {"Purpose", &e.Purpose}, {"OriginCaller", &e.OriginCaller},
		{"OriginReplica", &e.OriginReplica}, {"Subject", &e.Subject}, {"SubjectHash", &e.SubjectHash},
		{"Outcome", &e.Outcome}, {"Reason", &e.Reason}, {"Kind", &e.Kind}, {"Since", &e.Since}, {"File", &e.File},
		{"KeyID", &e.KeyID}, {"Sig", &e.Sig}} {
		if f.n == name {
			*f.p = v
		}
	}
}

// A string JSON would escape, in any field, makes the entry not plain
// (encoding/json writes it), and the line is the same as before.
func TestNotPlainGoesThroughJSON(t *testing.T) {
	for _, s := range []string{`"`, `\`, "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "\xff"} {
		for _, set := range []func(*Entry){
			func(e *Entry) { e.Purpose = "a" + s },
			func(e *Entry) { e.Prev = s },
			func(e *Entry) { e.Recipients = []string{"ok", s} },
			func(e *Entry) { e.Items = []Item{{Token: "ok"}, {Context: s}} },
		} {
			e := fullEntry()
			set(&e)
			if e.plain() {
				t.Fatalf("%q: plain", s)
			}
			var b bytes.Buffer
			if err := e.appendBody(&b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), jsonBody(t, &e)) {
				t.Fatalf("%q: %s", s, b.Bytes())
			}
		}
	}
}

// Sealing a reveal's entry allocates only its hash string (encoding/json
// allocated for the encoder and its reflection walk on every entry).
func TestAppendLineAllocations(t *testing.T) {
	e := fullEntry()
	e.Seq, e.Time, e.Type, e.Prev = 2, "2026-01-01T00:00:01.123456Z", TypeCall, ZeroHash
	var b bytes.Buffer
	b.Grow(4096)
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		if err := e.appendLine(&b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("appendLine: %v allocations, want at most 1 (the hash)", allocs)
	}
}

// FuzzPlainMatchesJSON: for any strings, appendBody writes exactly what
// encoding/json writes (appendPlain when they are plain, encoding/json
// itself otherwise).
func FuzzPlainMatchesJSON(f *testing.F) {
	f.Add("payment", "api_key:x", "00112233445566778899aabbccddeeff", "pan", uint64(7), 0, "")
	f.Add("a\"b", "\\", "\u2028", "<&>", uint64(0), -1, "\xff")
	f.Fuzz(func(t *testing.T, purpose, caller, token, kind string, seq uint64, omitted int, recipient string) {
		e := Entry{Seq: seq, Time: "t", Type: TypeCall, Caller: caller, Purpose: purpose, Kind: kind,
			ItemsOmitted: omitted, Prev: ZeroHash, Items: []Item{{Token: token, Kind: kind}, {Context: purpose}}}
		if recipient != "" {
			e.Recipients = []string{recipient, caller}
		}
		e.sanitize() // as appendLine does for an entry that is not plain
		var b bytes.Buffer
		if err := e.appendBody(&b); err != nil {
			t.Fatal(err)
		}
		if want := jsonBody(t, &e); !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("appendBody:\n%s\nencoding/json:\n%s", b.Bytes(), want)
		}
		if plainString(purpose) && strings.ContainsAny(purpose, "\"\\\x00\x7f") {
			t.Fatalf("%q counted as plain", purpose)
		}
	})
}

// BenchmarkAppendLine seals a reveal's entry as the writer does
// (BENCHMARKS.md, "CPU per call, this round").
func BenchmarkAppendLine(b *testing.B) {
	e := fullEntry()
	e.Seq, e.Time, e.Type, e.Prev = 2, "2026-01-01T00:00:01.123456Z", TypeCall, ZeroHash
	var buf bytes.Buffer
	buf.Grow(4096)
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := e.appendLine(&buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPlainCoversEveryField: every field of Entry and Item, found by
// reflection and set to a value JSON writes verbatim, comes out of
// appendPlain as encoding/json writes it. A field added to either struct
// and not to appendPlain fails here (the hand-listed cases above would not
// know about it), instead of silently missing from every audit line.
func TestPlainCoversEveryField(t *testing.T) {
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if !v.Type().Field(i).IsExported() {
				continue
			}
			switch f.Kind() {
			case reflect.String:
				f.SetString("v" + strconv.Itoa(i))
			case reflect.Int, reflect.Int64:
				f.SetInt(int64(i + 1))
			case reflect.Uint64, reflect.Uint32, reflect.Uint:
				f.SetUint(uint64(i + 1))
			case reflect.Bool:
				f.SetBool(true)
			case reflect.Slice:
				s := reflect.MakeSlice(f.Type(), 2, 2)
				for j := range 2 {
					switch el := s.Index(j); el.Kind() {
					case reflect.String:
						el.SetString("e" + strconv.Itoa(j))
					case reflect.Struct:
						fill(el)
					default:
						t.Fatalf("field %s: slice of %s: extend this test", v.Type().Field(i).Name, el.Kind())
					}
				}
				f.Set(s)
			default:
				t.Fatalf("field %s of kind %s: extend this test", v.Type().Field(i).Name, f.Kind())
			}
		}
	}
	var e Entry
	fill(reflect.ValueOf(&e).Elem())
	if !e.plain() {
		t.Fatal("not plain")
	}
	if got, want := e.appendPlain(nil), jsonBody(t, &e); !bytes.Equal(got, want) {
		t.Fatalf("appendPlain:\n%s\nencoding/json:\n%s", got, want)
	}
}
