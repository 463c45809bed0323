package audit_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// syncBuf is a Sink's io.Writer for tests.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// allFiles is the log in dir as one stream: every file, in chain order,
// gunzipped.
func allFiles(t *testing.T, dir string) []byte {
	t.Helper()
	var out []byte
	ns := names(t, dir)
	// Rotated files in name order (= chain order), the current one last.
	var cur string
	for _, n := range ns {
		if n == "audit.jsonl" {
			cur = n
			continue
		}
		if !strings.HasPrefix(n, "audit-") {
			continue
		}
		out = append(out, readMaybeGz(t, filepath.Join(dir, n))...)
	}
	return append(out, readMaybeGz(t, filepath.Join(dir, cur))...)
}

func readMaybeGz(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		if r, err = gzip.NewReader(f); err != nil {
			t.Fatal(err)
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openShipping(t *testing.T, path string, key []byte, sink audit.Sink, ro audit.Rotation) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, CheckpointEvery: 20, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Rotation: ro})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The shipped copy is the files' lines, byte for byte, across rotations,
// and verifies off-host with the public key alone; an edited copy does not.
func TestShipStdout(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	var out syncBuf
	l := openShipping(t, filepath.Join(dir, "audit.jsonl"), key, audit.NewWriterSink(&out), audit.Rotation{Compress: true})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := l.Write(context.Background(), entry(w*1000+i)); err != nil {
					t.Error(err)
				}
				if w == 0 && i%10 == 9 {
					if _, err := l.Rotate(context.Background()); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.ShippingLag != 0 {
		t.Errorf("lag %d after Close", st.ShippingLag)
	}
	shipped := out.Bytes()
	if want := allFiles(t, dir); !bytes.Equal(shipped, want) {
		t.Fatalf("shipped %d bytes, the files hold %d: not the same lines", len(shipped), len(want))
	}
	rep, err := verify(shipped, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(purposes(t, dir)); rep.Entries < uint64(n) || n != 400 {
		t.Fatalf("copy verifies %d entries; %d call entries in the files", rep.Entries, n)
	}
	lines := splitLines(shipped)
	if _, err := verify(join(append(lines[:10:10], lines[11:]...)), pubOf(key)); !errors.Is(err, audit.ErrTampered) {
		t.Errorf("a copy with a line removed: %v", err)
	}
}

// Shipping to syslog over a real unix datagram socket: every message is
// one line, and the messages verify as the log.
func TestShipSyslog(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan []byte, 4096)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- bytes.Clone(buf[:n])
		}
	}()
	sink, err := audit.DialSyslog("unixgram", sock, "tokenvault-audit")
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	logDir := filepath.Join(dir, "audit")
	l := openShipping(t, filepath.Join(logDir, "audit.jsonl"), key, sink, audit.Rotation{})
	for i := range 30 {
		if err := l.Write(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
		if i == 15 {
			if _, err := l.Rotate(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := allFiles(t, logDir)
	var copyOf []byte
	for len(copyOf) < len(want) {
		select {
		case m := <-got:
			// "<38>Dec  1 11:00:00 tokenvault-audit[123]: {json}\n"
			i := bytes.Index(m, []byte("]: "))
			if !bytes.HasPrefix(m, []byte("<38>")) || i < 0 || !bytes.Contains(m[:i], []byte("tokenvault-audit[")) {
				t.Fatalf("syslog message %q", m)
			}
			copyOf = append(copyOf, m[i+3:]...)
		case <-time.After(20 * time.Second):
			t.Fatalf("got %d of %d bytes", len(copyOf), len(want))
		}
	}
	if !bytes.Equal(copyOf, want) {
		t.Fatalf("the syslog messages are not the log's lines")
	}
	if _, err := verify(copyOf, pubOf(key)); err != nil {
		t.Fatal(err)
	}
}

// gatedSink ships only once its gate is open.
type gatedSink struct {
	gate chan struct{}
	out  syncBuf
}

func (g *gatedSink) Ship(p []byte) error { <-g.gate; _, err := g.out.Write(p); return err }
func (g *gatedSink) Close() error        { return nil }

// Retention keeps rotated files the sink has not taken yet, and deletes
// them once shipped.
func TestRetentionKeepsUnshipped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	key := newKey(t)
	sink := &gatedSink{gate: make(chan struct{})}
	ro := audit.Rotation{KeepFiles: 1}
	l := openShipping(t, path, key, sink, ro)
	for range 3 {
		for i := range 5 {
			if err := l.Write(context.Background(), entry(i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rotated := func() int {
		n := 0
		for _, name := range names(t, dir) {
			if strings.HasPrefix(name, "audit-") {
				n++
			}
		}
		return n
	}
	// Close runs retention's last pass, then reports closed, then waits
	// for the sink: once closed, the pass is done.
	closed := make(chan error)
	go func() { closed <- l.Close() }()
	for l.Healthy() == nil {
		time.Sleep(time.Millisecond)
	}
	if n := rotated(); n != 3 {
		t.Fatalf("files %v: want the 3 unshipped rotated files kept", names(t, dir))
	}
	close(sink.gate)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	// Shipped now (Close shipped the rest): the next start's pass deletes.
	l = openShipping(t, path, key, audit.NewWriterSink(&sink.out), ro)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := rotated(); n != 1 {
		t.Fatalf("files %v: want the shipped ones deleted down to 1", names(t, dir))
	}
	if _, err := audit.VerifyDir(dir, pubOf(key)); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(sink.out.Bytes(), pubOf(key)); err != nil {
		t.Fatal(err)
	}
}

// After a stop that did not save the shipped seq (a crash), the next start
// ships the rest again first; the copy verifies, the repeats skipped.
func TestShipCatchUp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	key := newKey(t)
	var out syncBuf
	l := openShipping(t, path, key, audit.NewWriterSink(&out), audit.Rotation{})
	for i := range 20 {
		if err := l.Write(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Write(context.Background(), entry(99))
	l.Close()
	state := path + ".shipped"
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	// As if the last 12 lines' save was lost: back across the rotation.
	os.WriteFile(state, []byte(fmt.Sprint(head-12)+"\n"), 0o600)
	l = openShipping(t, path, key, audit.NewWriterSink(&out), audit.Rotation{})
	l.Write(context.Background(), entry(100))
	l.Close()
	rep, err := verify(out.Bytes(), pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repeated != 12 {
		t.Errorf("%d repeated lines, want 12", rep.Repeated)
	}
	if want := allFiles(t, dir); !bytes.HasSuffix(out.Bytes(), want[len(want)-200:]) {
		t.Error("the copy does not end with the log's last lines")
	}
}
