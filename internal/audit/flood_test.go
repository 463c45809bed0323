package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// stalledLog opens a log whose writer goroutine can be held: its clock
// (read at the start of every group) blocks while the gate is closed. That
// makes "the writer is busy and the queue fills up" deterministic.
func stalledLog(t *testing.T) (l *audit.Log, path string, key ed25519.PrivateKey, hold, release func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.jsonl")
	key = newKey(t)
	var (
		mu   sync.Mutex
		gate chan struct{} // nil: open
	)
	now := func() time.Time {
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil {
			<-g
		}
		return time.Now()
	}
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, CheckpointEvery: 100,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	hold = func() {
		mu.Lock()
		gate = make(chan struct{})
		mu.Unlock()
	}
	release = func() {
		mu.Lock()
		if gate != nil {
			close(gate)
			gate = nil
		}
		mu.Unlock()
	}
	t.Cleanup(release)
	return l, path, key, hold, release
}

// waitOrDump fails the test with every goroutine's stack if wg is not done
// in time: a deadlock detector, not a speed check (the bound is minutes).
func waitOrDump(t *testing.T, what string, wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		buf := make([]byte, 1<<20)
		t.Fatalf("%s did not return (deadlock?)\n%s", what, buf[:runtime.Stack(buf, true)])
	}
}

// TestFloodDoesNotDeadlock: many more concurrent writers than the queue
// holds, while the writer is busy. Before the fix, Write held the log's
// mutex while blocked on the full queue and the writer needed that mutex
// to drain it: every later audited call, Healthy and Close hung forever.
func TestFloodDoesNotDeadlock(t *testing.T) {
	l, path, key, hold, release := stalledLog(t)
	hold()
	const writers = 3000
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Write(context.Background(), entry(i)); err == nil {
				ok.Add(1)
			} else {
				t.Errorf("write %d: %v", i, err)
			}
		}()
	}
	// While the queue is full and the writer held: Healthy answers at once.
	time.Sleep(50 * time.Millisecond) // let the writers pile up
	waitOrDump(t, "Healthy with a full queue", func() {
		if err := l.Healthy(); err != nil {
			t.Errorf("healthy: %v", err)
		}
	})
	release()
	waitOrDump(t, "3000 concurrent writes", wg.Wait)
	waitOrDump(t, "Close", func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	if ok.Load() != writers {
		t.Fatalf("%d of %d writes succeeded", ok.Load(), writers)
	}
	data, _ := os.ReadFile(path)
	rep, err := verify(data, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries-uint64(rep.Checkpoints) != writers || rep.Unsigned != 0 {
		t.Fatalf("report %+v, want %d call entries, all signed", rep, writers)
	}
}

// TestWriteGivesUpWithItsContext: a caller whose context ends is answered
// with the context's error, whether it waits for room in the queue or for
// its entry to be synced, and the log stays usable.
func TestWriteGivesUpWithItsContext(t *testing.T) {
	l, _, _, hold, release := stalledLog(t)
	hold()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var gaveUp atomic.Int64
	for i := range 2000 { // more than the queue holds: some wait for room
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Write(ctx, entry(i))
			switch {
			case errors.Is(err, context.Canceled):
				gaveUp.Add(1)
			case err != nil:
				t.Errorf("write: %v", err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	waitOrDump(t, "writers whose context was cancelled", wg.Wait)
	// The writer was held the whole time: nobody can have been answered
	// with success, so every one gave up.
	if gaveUp.Load() != 2000 {
		t.Fatalf("%d of 2000 writers gave up", gaveUp.Load())
	}
	if errors.Is(l.Healthy(), audit.ErrUnavailable) {
		t.Fatal("a caller giving up made the log unhealthy")
	}
	release()
	if err := l.Write(context.Background(), entry(1)); err != nil {
		t.Fatalf("write after the flood: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWithWritersWaiting: Close completes while writers wait for
// room; each writer told "written" has its entry in the file, every other
// one is told the log is closed.
func TestCloseWithWritersWaiting(t *testing.T) {
	l, path, key, hold, release := stalledLog(t)
	hold()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 2000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Write(context.Background(), entry(i))
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, audit.ErrUnavailable):
				t.Errorf("write: %v", err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	time.Sleep(10 * time.Millisecond)
	release()
	waitOrDump(t, "Close", func() {
		if err := <-closed; err != nil {
			t.Error(err)
		}
	})
	waitOrDump(t, "writers after Close", wg.Wait)
	if err := l.Write(context.Background(), entry(1)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("write after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	data, _ := os.ReadFile(path)
	rep, err := verify(data, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if calls := int64(rep.Entries) - int64(rep.Checkpoints); calls != ok.Load() || rep.Unsigned != 0 {
		t.Fatalf("%d call entries in the file, %d writers told written (report %+v)", calls, ok.Load(), rep)
	}
}

// TestWriteAsync: never blocks; ErrBusy when the queue is full; what was
// queued is written by Close.
func TestWriteAsync(t *testing.T) {
	l, path, key, hold, release := stalledLog(t)
	hold()
	queued := 0
	for i := range 5000 {
		err := l.WriteAsync(entry(i))
		if errors.Is(err, audit.ErrBusy) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		queued++
	}
	if queued == 0 || queued >= 5000 {
		t.Fatalf("%d entries queued before ErrBusy", queued)
	}
	release()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteAsync(entry(1)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("after Close: %v", err)
	}
	data, _ := os.ReadFile(path)
	rep, err := verify(data, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if int(rep.Entries)-rep.Checkpoints != queued {
		t.Fatalf("%d queued, report %+v", queued, rep)
	}
}

// rechain rewrites lines (parsed entries) into a consistent chain from
// prev, as someone with write access to the file could.
func rechain(t *testing.T, entries []audit.Entry, seq uint64, prev string) []byte {
	t.Helper()
	var out []byte
	for _, e := range entries {
		seq++
		e.Seq, e.Prev = seq, prev
		ln, err := e.Line()
		if err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		out = append(out, ln...)
	}
	return out
}

func parseAll(t *testing.T, data []byte) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for _, ln := range splitLines(data) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func openOpts(path string, key ed25519.PrivateKey, allow bool) (*audit.Log, error) {
	return audit.Open(audit.Options{Path: path, SigningKey: key, CheckpointEvery: 10,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AllowUnverified: allow})
}

// TestOpenRefusesUnverifiableHistory: the server must not sign a history
// it cannot vouch for (review finding: delete a reveal entry, drop the
// checkpoints, re-chain the rest, restart — and the server signed it).
func TestOpenRefusesUnverifiableHistory(t *testing.T) {
	_, key, data := writeLog(t, 25, 10) // checkpoints after 10, 20 and at Close
	entries := parseAll(t, data)
	var calls []audit.Entry
	for _, e := range entries {
		if e.Type == audit.TypeCall {
			calls = append(calls, e)
		}
	}
	lastCP := 0
	for i, e := range entries {
		if e.Type == audit.TypeCheckpoint {
			lastCP = i
		}
	}
	// A tail of unsigned entries after a valid checkpoint, as a crash
	// leaves it.
	crashTail := rechain(t, calls[:3], entries[len(entries)-1].Seq, entries[len(entries)-1].Hash)
	other := newKey(t)
	_, _, otherData := writeLog(t, 3, 10)

	cases := []struct {
		name string
		data []byte
		key  ed25519.PrivateKey
		ok   bool
	}{
		{"untouched", data, key, true},
		{"crash after a checkpoint", append(bytes.Clone(data), crashTail...), key, true},
		{"log without any checkpoint", rechain(t, calls[:5], 0, audit.ZeroHash), key, false},
		{"entry deleted, checkpoints dropped, re-chained", rechain(t, append(append([]audit.Entry{}, calls[:4]...), calls[5:]...), 0, audit.ZeroHash), key, false},
		{"tail after the last checkpoint re-chained to another head",
			append(bytes.Clone(data), rechain(t, calls[:2], entries[len(entries)-1].Seq, audit.ZeroHash)...), key, false},
		{"more unsigned entries than the writer ever leaves",
			append(bytes.Clone(data), rechain(t, repeat(calls, 10+256+1), entries[len(entries)-1].Seq, entries[len(entries)-1].Hash)...), key, false},
		{"last checkpoint signed by another key", otherData, other, false},
		{"last checkpoint's signature forged", forgeSig(t, data, lastCP), key, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.jsonl")
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := openOpts(p, tc.key, false)
			if tc.ok {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if err := l.Write(context.Background(), entry(1)); err != nil {
					t.Fatal(err)
				}
				l.Close()
				after, _ := os.ReadFile(p)
				if _, err := verify(after, pubOf(tc.key)); err != nil {
					t.Fatalf("verify after reopen: %v", err)
				}
				return
			}
			if !errors.Is(err, audit.ErrUnverifiedHistory) {
				if err == nil {
					l.Close()
				}
				t.Fatalf("open: %v, want ErrUnverifiedHistory", err)
			}
			before, _ := os.ReadFile(p)
			if !bytes.Equal(before, tc.data) {
				t.Fatal("a refused open changed the file")
			}
			// The operator can accept it; the acceptance is the first
			// thing in the chain after it, and gets signed.
			l, err = openOpts(p, tc.key, true)
			if err != nil {
				t.Fatalf("open with AllowUnverified: %v", err)
			}
			if st := l.Stats(); st.VerifyErrors != 1 {
				t.Errorf("stats %+v: want the unverified history counted", st)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			after, _ := os.ReadFile(p)
			added := parseAll(t, after[len(tc.data):])
			if len(added) != 2 || added[0].Type != audit.TypeNotice || added[0].Outcome != "UNVERIFIED" || added[1].Type != audit.TypeCheckpoint {
				t.Fatalf("entries added after an accepted unverified history: %+v", added)
			}
		})
	}
}

func repeat(es []audit.Entry, n int) []audit.Entry {
	out := make([]audit.Entry, n)
	for i := range out {
		out[i] = es[i%len(es)]
	}
	return out
}

// forgeSig re-signs nothing: it flips a bit of the checkpoint's signature
// and re-seals the line, so that only the signature check can notice.
func forgeSig(t *testing.T, data []byte, idx int) []byte {
	t.Helper()
	entries := parseAll(t, data)
	sig := []byte(entries[idx].Sig)
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	entries[idx].Sig = string(sig)
	// Re-seal from the edited line on, keeping the chain consistent.
	var out []byte
	for _, ln := range splitLines(data)[:idx] {
		out = append(out, ln...)
	}
	rest := entries[idx:]
	// (rechain keeps a checkpoint's key id and signature as they are.)
	out = append(out, rechain(t, rest, entries[idx].Seq-1, entries[idx].Prev)...)
	return out
}
