package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/audit"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func open(t testing.TB, path string, key ed25519.PrivateKey, every int) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, CheckpointEvery: every,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func entry(i int) audit.Entry {
	return audit.Entry{Caller: "spiffe://example.org/payments", Auth: "mtls", Op: "detokenize",
		Method: "/tokenvault.v1.TokenVault/Detokenize", Purpose: "payment", Outcome: "OK",
		Items: []audit.Item{{Token: fmt.Sprintf("%032x", i), Kind: "pan", Outcome: "OK"}}}
}

// writeLog writes n entries one after the other and closes the log.
func writeLog(t *testing.T, n, every int) (path string, key ed25519.PrivateKey, data []byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.jsonl")
	key = newKey(t)
	l := open(t, path, key, every)
	for i := range n {
		if err := l.Write(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, key, data
}

func verify(data []byte, pub ed25519.PublicKey) (audit.Report, error) {
	return audit.Verify(bytes.NewReader(data), pub)
}

func TestWriteVerify(t *testing.T) {
	_, key, data := writeLog(t, 50, 10)
	rep, err := verify(data, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Count(data, []byte("\n"))
	// 6 checkpoints: the first one a new log starts with, 4 by count, 1 at Close.
	if rep.Entries != uint64(lines) || rep.Checkpoints != 6 || rep.Unsigned != 0 || !rep.SignaturesChecked {
		t.Fatalf("report %+v for %d lines", rep, lines)
	}
	// Every call entry made it, once.
	calls := 0
	for _, ln := range bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == audit.TypeCall {
			calls++
		}
	}
	if calls != 50 {
		t.Fatalf("%d call entries, want 50", calls)
	}
	// Another key's signatures are refused.
	if _, err := verify(data, pubOf(newKey(t))); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("verify with the wrong public key: %v", err)
	}
}

// TestConcurrentWriters: writers that share writes and fsyncs (group
// commit) still produce one valid chain holding every entry.
func TestConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newKey(t)
	l := open(t, path, key, 7)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Write(context.Background(), entry(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.Close()
	data, _ := os.ReadFile(path)
	rep, err := verify(data, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 200+uint64(rep.Checkpoints) || rep.Unsigned != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func splitLines(data []byte) [][]byte {
	return bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func join(lines [][]byte) []byte { return bytes.Join(lines, nil) }

// TestTamper edits, deletes and reorders every line in turn; each must fail
// verification.
func TestTamper(t *testing.T) {
	_, key, data := writeLog(t, 12, 5)
	lines := splitLines(data)
	for i := range lines {
		t.Run(fmt.Sprintf("line=%d", i+1), func(t *testing.T) {
			edit := make([][]byte, len(lines))
			copy(edit, lines)
			// A one-character edit: the seq digit, a purpose, an outcome…
			b := bytes.Clone(lines[i])
			j := bytes.IndexByte(b, ':') + 1
			b[j] ^= 1
			edit[i] = b
			if _, err := verify(join(edit), nil); !errors.Is(err, audit.ErrTampered) {
				t.Errorf("edit: %v", err)
			}
			del := append(append([][]byte{}, lines[:i]...), lines[i+1:]...)
			if i == len(lines)-1 {
				// Dropping the last line is truncation: see TestTruncation.
			} else if _, err := verify(join(del), nil); !errors.Is(err, audit.ErrTampered) {
				t.Errorf("delete: %v", err)
			}
			if i+1 < len(lines) {
				sw := append([][]byte{}, lines...)
				sw[i], sw[i+1] = sw[i+1], sw[i]
				if _, err := verify(join(sw), nil); !errors.Is(err, audit.ErrTampered) {
					t.Errorf("swap with next: %v", err)
				}
			}
		})
	}
	if _, err := verify(data, pubOf(key)); err != nil {
		t.Fatalf("untouched log: %v", err)
	}
}

// TestRewrittenChain: someone who edits an entry and recomputes every hash
// after it fools the chain check but not the checkpoint signatures.
func TestRewrittenChain(t *testing.T) {
	_, key, data := writeLog(t, 6, 100)
	lines := splitLines(data)
	var out []byte
	prev := audit.ZeroHash
	for i, ln := range lines {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			e.Purpose = "marketing"
		}
		e.Prev = prev
		nl, err := e.Line()
		if err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		out = append(out, nl...)
	}
	if _, err := verify(out, nil); err != nil {
		t.Fatalf("a consistently rewritten chain passes the chain check (expected): %v", err)
	}
	if _, err := verify(out, pubOf(key)); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("rewritten chain with signature check: %v", err)
	}
}

func TestTruncation(t *testing.T) {
	_, key, data := writeLog(t, 7, 3)
	lines := splitLines(data)
	// A cut inside a line is detected.
	if _, err := verify(data[:len(data)-5], pubOf(key)); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("cut line: %v", err)
	}
	// Removing whole lines after the last checkpoint cannot be told from a
	// crash: the report shows the unsigned tail instead.
	rep, err := verify(join(lines[:len(lines)-1]), pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unsigned == 0 {
		t.Fatalf("report %+v: the tail after the last checkpoint should be reported unsigned", rep)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	path, key, _ := writeLog(t, 3, 100)
	// A crash mid-write leaves a torn line; reopening cuts it off.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":99,"time":"`)
	f.Close()
	l := open(t, path, key, 100)
	for i := range 3 {
		if err := l.Write(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	data, _ := os.ReadFile(path)
	rep, err := verify(data, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checkpoints != 3 || rep.Entries != 9 || rep.Unsigned != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// TestUnwritable writes to a full disk (/dev/full): writes fail, and keep
// failing, with ErrUnavailable.
func TestUnwritable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /dev/full")
	}
	l := open(t, "/dev/full", newKey(t), 100)
	defer l.Close()
	if err := l.Healthy(); err != nil {
		t.Fatalf("healthy before any write: %v", err)
	}
	for range 2 {
		if err := l.Write(context.Background(), entry(1)); !errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("write to a full disk: %v", err)
		}
	}
	if err := l.Healthy(); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("healthy after a failed write: %v", err)
	}
}

func TestTokenHash(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	l := open(t, filepath.Join(dir, "a"), key, 10)
	defer l.Close()
	h := l.TokenHash("4111118306421111")
	if len(h) != 32 || strings.Contains(h, "1111") && strings.Contains(h, "411111") {
		t.Fatalf("hash %q", h)
	}
	if h != l.TokenHash("4111118306421111") || h == l.TokenHash("4111118306421112") {
		t.Fatal("token hash not deterministic or not distinct")
	}
	l2 := open(t, filepath.Join(dir, "b"), newKey(t), 10)
	defer l2.Close()
	if l2.TokenHash("4111118306421111") == h {
		t.Fatal("token hash does not depend on the key")
	}

	// Known answer, computed here from the definition (HMAC-SHA256 under
	// an HKDF-derived key, first 128 bits), also under concurrent use: the
	// hasher reuses its HMAC states.
	k, err := hkdf.Key(sha256.New, key.Seed(), nil, "tokenvault audit token hash v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	want := func(token string) string {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(token))
		return hex.EncodeToString(m.Sum(nil)[:16])
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tok := strings.Repeat("9", g+1) + strconv.Itoa(i)
				if got := l.TokenHash(tok); got != want(tok) {
					t.Errorf("TokenHash(%q) = %s, want %s", tok, got, want(tok))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestSigningKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "audit-signing.key")
	k1, created, err := audit.LoadOrCreateSigningKey(path, true)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	k2, created, err := audit.LoadOrCreateSigningKey(path, false)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatal("reload gave another key", created, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	pubPEM, err := os.ReadFile(audit.PublicKeyPath(path))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil || !pub.Equal(k1.Public()) {
		t.Fatal("public key file does not match", err)
	}
	if st, _ := os.Stat(audit.PublicKeyPath(path)); st.Mode().Perm() != 0o644 {
		t.Fatalf("public key file mode %v", st.Mode())
	}
}

// TestSigningKeyNotRecreated: a missing signing key is made again only
// when the caller allows it (no audit log yet), and never over the public
// key file of an earlier key.
func TestSigningKeyNotRecreated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit-signing.key")
	if _, _, err := audit.LoadOrCreateSigningKey(path, false); !errors.Is(err, keyfile.ErrNotExist) {
		t.Fatalf("missing key, creation not allowed: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a key was created although creation was not allowed")
	}
	if _, _, err := audit.LoadOrCreateSigningKey(path, true); err != nil {
		t.Fatal(err)
	}
	oldPub, _ := os.ReadFile(audit.PublicKeyPath(path))
	os.Remove(path)
	if _, _, err := audit.LoadOrCreateSigningKey(path, true); err == nil || !strings.Contains(err.Error(), "public key file") {
		t.Fatalf("new key over an old public key file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a key was created beside an earlier key's public key file")
	}
	if b, _ := os.ReadFile(audit.PublicKeyPath(path)); !bytes.Equal(b, oldPub) {
		t.Fatal("the earlier public key file was overwritten")
	}
}

// TestCheckpointInterval: with entries coming in, a checkpoint is written
// once the interval has passed (clock injected: no sleeping).
func TestCheckpointInterval(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newKey(t)
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, CheckpointEvery: 1000, CheckpointInterval: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(context.Background(), entry(1))
	now.Add(int64(2 * time.Minute))
	l.Write(context.Background(), entry(2))
	l.Close()
	data, _ := os.ReadFile(path)
	var types []string
	for _, ln := range splitLines(data) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "checkpoint,call,call,checkpoint" {
		t.Fatalf("entries %v", types)
	}
}

// TestSecondWriterRefused: while one Log has a file open, a second Open
// of it (another server whose audit path is the same, as a restored data
// directory beside the live one) is refused with ErrInUse, naming the path
// and the setting; the first log goes on, and verifies. After Close the
// file can be opened again, across a rotation too.
func TestSecondWriterRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newKey(t)
	l := open(t, path, key, 2)
	if err := l.Write(ctx, entry(1)); err != nil {
		t.Fatal(err)
	}
	second, err := audit.Open(audit.Options{Path: path, SigningKey: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, audit.ErrInUse) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "auth.audit.path") {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second Open = %v, want ErrInUse naming the path and auth.audit.path", err)
	}
	if _, err := l.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(audit.Options{Path: path, SigningKey: key}); !errors.Is(err, audit.ErrInUse) {
		t.Fatalf("second Open after a rotation = %v, want ErrInUse", err)
	}
	if err := l.Write(ctx, entry(2)); err != nil {
		t.Fatalf("the first log after the refused Open: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	again := open(t, path, key, 2)
	if err := again.Write(ctx, entry(3)); err != nil {
		t.Fatal(err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.VerifyDir(filepath.Dir(path), pubOf(key)); err != nil {
		t.Fatalf("VerifyDir: %v (%+v)", err, rep)
	}
}
