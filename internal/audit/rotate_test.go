package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/audit"
)

func openRotating(t testing.TB, path string, key []byte, ro audit.Rotation) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, CheckpointEvery: 50,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Rotation: ro})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// purposes lists the purposes of the call entries of the log in dir, in
// order.
func purposes(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if err := audit.Scan(dir, func(_ string, e audit.Entry) bool {
		if e.Type == audit.TypeCall {
			out = append(out, e.Purpose)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != "audit.jsonl.lock" { // the open log's lock (lockLog), not a log file
			out = append(out, e.Name())
		}
	}
	return out
}

// Rotation under concurrent writers, by size and on request, with
// compression: every entry is in exactly one file, once, and the
// directory verifies as one chain.
func TestRotateConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	l := openRotating(t, filepath.Join(dir, "audit.jsonl"), key, audit.Rotation{MaxSize: 8 << 10, Compress: true})
	const writers, each = 16, 150
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := entry(i)
				e.Purpose = fmt.Sprintf("w%d-%d", w, i)
				if err := l.Write(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	rotated := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				rotated <- n
				return
			default:
			}
			if _, err := l.Rotate(context.Background()); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	wg.Wait()
	close(stop)
	requested := <-rotated
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyDir(dir, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) < 3 || requested == 0 {
		t.Fatalf("%d files, %d requested rotations: want several", len(rep.Files), requested)
	}
	for _, n := range names(t, dir)[:len(rep.Files)-1] {
		if !strings.HasSuffix(n, ".jsonl.gz") {
			t.Errorf("rotated file %s is not compressed", n)
		}
	}
	got := purposes(t, dir)
	if len(got) != writers*each {
		t.Fatalf("%d call entries across %d files, want %d", len(got), len(rep.Files), writers*each)
	}
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p] {
			t.Fatalf("entry %s written twice", p)
		}
		seen[p] = true
	}
	if st := l.Stats(); st.Rotations < uint64(len(rep.Files)-1) || st.BytesWritten == 0 {
		t.Errorf("stats %+v for %d files", st, len(rep.Files))
	}
}

// rotatedLog writes a log of four rotated files and the current one.
func rotatedLog(t *testing.T, compress bool) (dir string, key []byte) {
	t.Helper()
	dir = t.TempDir()
	k := newKey(t)
	l := openRotating(t, filepath.Join(dir, "audit.jsonl"), k, audit.Rotation{Compress: compress})
	for f := range 5 {
		for i := range 20 {
			if err := l.Write(context.Background(), entry(f*100+i)); err != nil {
				t.Fatal(err)
			}
		}
		if f < 4 {
			if _, err := l.Rotate(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyDir(dir, pubOf(k)); err != nil {
		t.Fatal(err)
	}
	// Names carry the first entry's seq (and sort in chain order).
	if n := names(t, dir)[0]; !strings.HasPrefix(n, "audit-00000000000000000001-") {
		t.Fatalf("first rotated file %s", n)
	}
	return dir, k
}

func TestRotatedFilesTampered(t *testing.T) {
	rotated := func(t *testing.T, dir string) []string {
		var out []string
		for _, n := range names(t, dir) {
			if n != "audit.jsonl" {
				out = append(out, n)
			}
		}
		if len(out) != 4 {
			t.Fatalf("rotated files %v", out)
		}
		return out
	}
	cutLastLine := func(t *testing.T, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b = b[:len(b)-1]
		if err := os.WriteFile(path, b[:strings.LastIndexByte(string(b), '\n')+1], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		compress bool
		tamper   func(t *testing.T, dir string, files []string)
		want     string
	}{
		{"middle file deleted", false, func(t *testing.T, dir string, files []string) {
			os.Remove(filepath.Join(dir, files[1]))
		}, "missing, renamed or out of order"},
		{"oldest file deleted", false, func(t *testing.T, dir string, files []string) {
			os.Remove(filepath.Join(dir, files[0]))
		}, "retention did not record"},
		{"current file deleted", false, func(t *testing.T, dir string, files []string) {
			os.Remove(filepath.Join(dir, "audit.jsonl"))
		}, "current file audit.jsonl is missing"},
		{"two files swapped", false, func(t *testing.T, dir string, files []string) {
			a, b := filepath.Join(dir, files[1]), filepath.Join(dir, files[2])
			os.Rename(a, a+".x")
			os.Rename(b, a)
			os.Rename(a+".x", b)
		}, "line 1"},
		{"rotated file truncated at a line", false, func(t *testing.T, dir string, files []string) {
			cutLastLine(t, filepath.Join(dir, files[2]))
		}, "closing checkpoint"},
		{"rotated file truncated mid-line", false, func(t *testing.T, dir string, files []string) {
			p := filepath.Join(dir, files[2])
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}, "no newline at the end"},
		{"compressed file truncated", true, func(t *testing.T, dir string, files []string) {
			p := filepath.Join(dir, files[1])
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()/2)
		}, files1()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, key := rotatedLog(t, tc.compress)
			tc.tamper(t, dir, rotated(t, dir))
			rep, err := audit.VerifyDir(dir, pubOf(key))
			if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyDir: %v, want ErrTampered with %q", err, tc.want)
			}
			bad := 0
			for _, f := range rep.Files {
				if f.Err != nil {
					bad++
				}
			}
			if bad == 0 && !strings.Contains(tc.want, "missing") && !strings.Contains(tc.want, "retention") {
				t.Errorf("no file reported bad: %+v", rep.Files)
			}
		})
	}
}

// files1 is what a damaged gzip stream is reported as (the file's name).
func files1() string { return "-00000000000000000" }

// A log written before rotation (one file, no continue entry) verifies
// as a directory too, and a rotating log continues it.
func TestRotateContinuesOldLog(t *testing.T) {
	path, key, _ := writeLog(t, 30, 10)
	dir := filepath.Dir(path)
	if _, err := audit.VerifyDir(dir, pubOf(key)); err != nil {
		t.Fatal(err)
	}
	l := openRotating(t, path, key, audit.Rotation{})
	if _, err := l.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(context.Background(), entry(99)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep, err := audit.VerifyDir(dir, pubOf(key))
	if err != nil || len(rep.Files) != 2 {
		t.Fatalf("%+v %v", rep, err)
	}
	if n := len(purposes(t, dir)); n != 31 {
		t.Errorf("%d entries, want 31", n)
	}
}

// A crash between a rotation's rename and the new file: the next Open
// continues the chain from the rotated file.
func TestOpenAfterRenameBeforeNewFile(t *testing.T) {
	path, key, _ := writeLog(t, 30, 10)
	dir := filepath.Dir(path)
	if err := os.Rename(path, filepath.Join(dir, "audit-00000000000000000001-20260101T000000Z.jsonl")); err != nil {
		t.Fatal(err)
	}
	if ok, err := audit.HasHistory(path); !ok || err != nil {
		t.Fatalf("HasHistory: %v %v", ok, err)
	}
	l := openRotating(t, path, key, audit.Rotation{})
	if err := l.Write(context.Background(), entry(99)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := audit.VerifyDir(dir, pubOf(key)); err != nil {
		t.Fatal(err)
	}
	// The same with a rotated file that does not end with a checkpoint
	// of this key: refused.
	other := t.TempDir()
	p2, _, _ := writeLog(t, 5, 10)
	os.Rename(p2, filepath.Join(other, "audit-00000000000000000001-20260101T000000Z.jsonl"))
	_, err := audit.Open(audit.Options{Path: filepath.Join(other, "audit.jsonl"), SigningKey: key,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, audit.ErrUnverifiedHistory) {
		t.Fatalf("Open after a foreign rotated file: %v", err)
	}
}

func TestRotateBySize(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	l := openRotating(t, filepath.Join(dir, "audit.jsonl"), key, audit.Rotation{MaxSize: 4 << 10})
	for i := range 100 {
		if err := l.Write(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	rep, err := audit.VerifyDir(dir, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) < 5 {
		t.Fatalf("%d files for 100 entries of ~350 bytes at 4 KiB", len(rep.Files))
	}
	for _, f := range rep.Files[:len(rep.Files)-1] {
		st, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		// One group past the limit at most (sequential writes: one entry).
		if st.Size() > 4<<10+2048 {
			t.Errorf("%s: %d bytes", f.Name, st.Size())
		}
	}
}

func TestRetention(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ro      audit.Rotation
		rotated int // left after 5 rotations
	}{
		{"keep 2 files", audit.Rotation{KeepFiles: 2}, 2},
		{"keep 2 files compressed", audit.Rotation{KeepFiles: 2, Compress: true}, 2},
		{"keep none by age", audit.Rotation{KeepAge: time.Nanosecond}, 0},
		{"not shipped", audit.Rotation{KeepFiles: 1, Shipped: func(string) bool { return false }}, 5},
		{"two shipped", audit.Rotation{KeepFiles: 1, Shipped: shippedFirst(2)}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := newKey(t)
			l := openRotating(t, filepath.Join(dir, "audit.jsonl"), key, tc.ro)
			for f := range 6 {
				for i := range 10 {
					if err := l.Write(context.Background(), entry(f*100+i)); err != nil {
						t.Fatal(err)
					}
				}
				if f < 5 {
					if _, err := l.Rotate(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got := names(t, dir)
			if !slices.Contains(got, "audit.jsonl") {
				t.Fatalf("the current file was deleted: %v", got)
			}
			if len(got)-1 != tc.rotated {
				t.Fatalf("files %v, want %d rotated", got, tc.rotated)
			}
			rep, err := audit.VerifyDir(dir, pubOf(key))
			if err != nil {
				t.Fatal(err)
			}
			// VerifyDir found the oldest file's predecessor recorded as
			// deleted.
			if tc.rotated < 5 && rep.Continues == "" {
				t.Errorf("the oldest file continues nothing: %+v", rep)
			}
		})
	}
}

// shippedFirst says the first n files it is asked about are shipped.
func shippedFirst(n int) func(string) bool {
	var asked []string
	return func(name string) bool {
		if !slices.Contains(asked, name) {
			asked = append(asked, name)
		}
		return slices.Index(asked, name) < n
	}
}

// A crash during the rotation's first write to the new file (its
// checkpoint torn): the next start writes the new file again.
func TestOpenAfterTornContinue(t *testing.T) {
	dir, key := rotatedLog(t, false)
	path := filepath.Join(dir, "audit.jsonl")
	// Make the current file look like a rotation's torn first write: move
	// it into place as a rotated file (it ends with a checkpoint), then
	// write its continue entry alone plus a torn line.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cont, last []byte
	lines := strings.SplitAfter(string(b), "\n")
	lines = lines[:len(lines)-1]
	first, _ := audit.ParseLine([]byte(lines[0]))
	last = []byte(lines[len(lines)-1])
	le, _ := audit.ParseLine(last)
	name := fmt.Sprintf("audit-%020d-20260101T000000Z.jsonl", first.Seq)
	if err := os.Rename(path, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	e := audit.Entry{Seq: le.Seq + 1, Time: le.Time, Type: audit.TypeContinue, Op: audit.OpRotate, Reason: "size", File: name, CheckpointSeq: le.Seq, Prev: le.Hash}
	if cont, err = e.Line(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(cont, `{"seq":`...), 0o600); err != nil {
		t.Fatal(err)
	}
	l := openRotating(t, path, key, audit.Rotation{})
	if err := l.Write(context.Background(), entry(7)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := audit.VerifyDir(dir, pubOf(key)); err != nil {
		t.Fatal(err)
	}
}

// Every line carries the replica id, the log's own entries included.
func TestReplicaInEveryEntry(t *testing.T) {
	dir := t.TempDir()
	l, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.jsonl"), SigningKey: newKey(t), Replica: "eu-1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(context.Background(), entry(1))
	l.Rotate(context.Background())
	l.WriteAsync(entry(2))
	l.Close()
	n := 0
	audit.Scan(dir, func(_ string, e audit.Entry) bool {
		n++
		if e.Replica != "eu-1" {
			t.Errorf("entry %d (%s): replica %q", e.Seq, e.Type, e.Replica)
		}
		return true
	})
	if n < 6 {
		t.Errorf("%d entries", n)
	}
}
