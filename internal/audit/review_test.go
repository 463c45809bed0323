package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// Regression tests for a review of the audit log's Open checks and its
// asynchronous writes.

// TestCrashLoopAccepted: crash after crash, each just before the writer's
// next count-based checkpoint, must not pile up more unsigned entries than
// the next start accepts (the count after a restart is the real one, and
// the first group after it is signed).
func TestCrashLoopAccepted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newKey(t)
	every := 300
	o := audit.Options{Path: path, SigningKey: key, CheckpointEvery: every, CheckpointInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l, err := audit.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(context.Background(), entry(0))
	l.Close()
	for run := 1; run <= 4; run++ {
		l, err := audit.Open(o)
		if err != nil {
			t.Fatalf("start %d refused: %v", run, err)
		}
		for i := range every - 1 {
			if err := l.Write(context.Background(), entry(i)); err != nil {
				t.Fatal(err)
			}
		}
		// A crash: no Close (the writer goroutine idles until the test ends).
		audit.Crashed(l)
	}
	data, _ := os.ReadFile(path)
	if _, err := verify(data, pubOf(key)); err != nil {
		t.Fatal(err)
	}
}

// TestBigTailAccepted: large (legitimate) batch entries after a crash; the
// writer checkpoints by size too, so what is unsigned stays well within
// what Open reads back.
func TestBigTailAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~70 MB")
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	key := newKey(t)
	o := audit.Options{Path: path, SigningKey: key, CheckpointEvery: 1000, CheckpointInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l, err := audit.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	items := make([]audit.Item, audit.MaxItems)
	for i := range items {
		items[i] = audit.Item{Context: "orders.shipping_address.customer", Subject: fmt.Sprintf("customer-%030d", i), Outcome: "OK"}
	}
	e := audit.Entry{Caller: "spiffe://example.org/etl", Auth: "mtls", Op: "decrypt", Method: "/tokenvault.v1.TokenVault/Decrypt", Purpose: "export", Outcome: "OK", Items: items}
	for range 650 {
		if err := l.Write(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	// A crash: no Close.
	audit.Crashed(l)
	l2, err := audit.Open(o)
	if err != nil {
		t.Fatalf("restart refused: %v", err)
	}
	l2.Close()
}

// TestOpenRefusesWhatVerifyRejects: an appended, chained line that `audit
// verify` rejects (an unknown type, a call entry with a signature) must
// not be accepted and then signed by the server.
func TestOpenRefusesWhatVerifyRejects(t *testing.T) {
	_, key, data := writeLog(t, 5, 10)
	entries := parseAll(t, data)
	last := entries[len(entries)-1]
	for name, bad := range map[string]audit.Entry{
		"unknown type":           {Type: "bogus", Op: "x"},
		"call with a signature":  {Type: audit.TypeCall, Op: "x", KeyID: "0123456789abcdef", Sig: "AAAA"},
		"second checkpoint-like": {Type: audit.TypeCheckpoint, KeyID: "0123456789abcdef", Sig: "AAAA"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.jsonl")
			tampered := append(bytes.Clone(data), rechain(t, []audit.Entry{entry(1), bad}, last.Seq, last.Hash)...)
			os.WriteFile(p, tampered, 0o600)
			if _, err := verify(tampered, pubOf(key)); !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("verify of the tampered log: %v", err)
			}
			l, err := openOpts(p, key, false)
			if !errors.Is(err, audit.ErrUnverifiedHistory) {
				if err == nil {
					l.Close()
				}
				t.Fatalf("open: %v, want ErrUnverifiedHistory", err)
			}
		})
	}
}

// TestRefusedOpenLeavesFile: a torn last line is cut off only once the
// history verified; a refused Open changes nothing.
func TestRefusedOpenLeavesFile(t *testing.T) {
	_, key, data := writeLog(t, 5, 10)
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	tampered := append(bytes.Clone(data), rechain(t, []audit.Entry{{Type: "bogus"}}, 1000, audit.ZeroHash)...)
	tampered = append(tampered, `{"seq":99,"ti`...)
	os.WriteFile(p, tampered, 0o600)
	if _, err := openOpts(p, key, false); !errors.Is(err, audit.ErrUnverifiedHistory) {
		t.Fatalf("open: %v", err)
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(after, tampered) {
		t.Fatal("a refused Open changed the file")
	}
}

// TestWriteAsyncRacingClose: every entry WriteAsync accepted is in the
// file after Close, however the two race.
func TestWriteAsyncRacingClose(t *testing.T) {
	for range 20 {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l := open(t, path, newKey(t), 1000)
		var ok atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if l.WriteAsync(entry(1)) == nil {
						ok.Add(1)
					}
				}
			}()
		}
		time.Sleep(2 * time.Millisecond)
		l.Close()
		close(stop)
		wg.Wait()
		data, _ := os.ReadFile(path)
		rep, err := verify(data, nil)
		if err != nil {
			t.Fatal(err)
		}
		if written := int64(rep.Entries) - int64(rep.Checkpoints); written != ok.Load() {
			t.Fatalf("WriteAsync accepted %d entries, %d written", ok.Load(), written)
		}
	}
}
