package grpcserver

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokenvault/tokenvault/internal/audit"
)

// TestRefusalsBounded: with the audit log's writer held (its queue fills,
// WriteAsync answers ErrBusy) and refusals from many more distinct callers
// than refusalKeys, add never blocks, the counted groups stay bounded, and
// after Close the log holds every refusal exactly once — individually or
// in a count.
func TestRefusalsBounded(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var mu sync.Mutex
	gate := make(chan struct{})
	held := false // Open reads the clock too
	now := func() time.Time {
		mu.Lock()
		h := held
		mu.Unlock()
		if h {
			<-gate
		}
		return time.Now()
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := audit.Open(audit.Options{Path: path, SigningKey: key, Logger: quiet, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	held = true
	mu.Unlock()
	r := newRefusals(l, quiet)
	const n, insider = 20000, 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			// Anonymous refusals from ever new hosts, naming ever new
			// methods (a flood meant to wash out other callers' records)…
			r.add(audit.Entry{Method: fmt.Sprintf("/x.Y/M%d", i), Outcome: "Unauthenticated",
				Peer: fmt.Sprintf("10.0.%d.%d:5000", i/256%256, i%256), Reason: "no credentials"})
			// …and, among them, an insider's.
			if i%100 == 0 {
				r.add(audit.Entry{Method: "/tokenvault.v1.TokenVault/Detokenize", Op: "detokenize", Outcome: "PermissionDenied",
					Caller: "spiffe://example.org/insider", Auth: "mtls", Peer: "10.9.9.9:1", Reason: "no role",
					Items: make([]audit.Item, 1000)})
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("add blocked with the audit log's writer held")
	}
	r.mu.Lock()
	groups := len(r.counts)
	r.mu.Unlock()
	if groups > 2*refusalKeys+1 {
		t.Fatalf("%d counted groups, bound is %d", groups, 2*refusalKeys+1)
	}
	mu.Lock()
	held = false
	mu.Unlock()
	close(gate)
	r.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(bytes.NewReader(data), key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	var single, counted, insiderSeen uint64
	catchAll := false
	for _, ln := range bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Items) > maxRefusalItems || e.Caller == "spiffe://example.org/insider" && len(e.Items)+e.ItemsOmitted != 1000 && e.Type == audit.TypeCall {
			t.Fatalf("refusal entry with %d items (+%d omitted)", len(e.Items), e.ItemsOmitted)
		}
		if strings.Contains(string(ln), "/x.Y/M") && e.Type == audit.TypeRefusals {
			t.Fatalf("a counted group keeps a caller-chosen method name: %+v", e)
		}
		switch e.Type {
		case audit.TypeCall:
			single++
			if e.Caller == "spiffe://example.org/insider" {
				insiderSeen++
			}
		case audit.TypeRefusals:
			counted += e.Count
			catchAll = catchAll || e.Caller == "*"
			if e.Caller == "spiffe://example.org/insider" {
				insiderSeen += e.Count
			}
		}
	}
	if single+counted != n+insider {
		t.Fatalf("%d individual + %d counted refusals, want %d", single, counted, n+insider)
	}
	if insiderSeen != insider {
		t.Fatalf("the insider's %d refusals are recorded under its name %d times", insider, insiderSeen)
	}
	if single > refusalBurst+refusalRate*120 || !catchAll {
		t.Fatalf("%d individual entries (bound ~%d), catch-all group used: %v", single, refusalBurst, catchAll)
	}
}

// TestRefusalsFlushWhileCounting: the flush loop and a flood of counted
// refusals at once. A flush that found nothing counted used to range over
// the live map while add wrote to it (a data race the race detector caught
// in the flood test); every refusal must also be in exactly one flush.
func TestRefusalsFlushWhileCounting(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	never := rate.NewLimiter(0, 0) // every refusal is counted, none written alone
	r := &refusals{log: quiet, anon: never, authed: never, now: time.Now, counts: map[refusalKey]*refusalCount{}}
	var flushed atomic.Uint64
	write := func(e audit.Entry) error { flushed.Add(e.Count); return nil }
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				r.flush(write)
			}
		}
	}()
	const adds = 5000
	for i := range adds {
		r.add(audit.Entry{Method: "/tokenvault.v1.TokenVault/Detokenize", Outcome: "Unauthenticated",
			Peer: fmt.Sprintf("10.0.0.%d:1", i%4), Reason: "no credentials"})
		if i%8 == 0 {
			runtime.Gosched() // let the loop find the counts empty
		}
	}
	close(stop)
	<-done
	r.flush(write)
	if got := flushed.Load(); got != adds {
		t.Fatalf("%d refusals flushed, want %d", got, adds)
	}
}

// TestRefusalsBoundedWhileLogBusy: while the audit queue stays full
// (every write ErrBusy) through several flushes and a flood from ever new
// hosts goes on — also between a flush's take and its put-back — the
// counted groups stay within add's bound (the groups a flush puts back go
// into the catch-alls like new ones), and not one refusal is lost or
// counted twice.
func TestRefusalsBoundedWhileLogBusy(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	never := rate.NewLimiter(0, 0)
	r := &refusals{log: quiet, anon: never, authed: never, now: time.Now, counts: map[refusalKey]*refusalCount{}}
	const rounds, perRound = 10, 3000
	host := 0
	flood := func() {
		for range perRound {
			r.add(audit.Entry{Method: "/tokenvault.v1.TokenVault/Detokenize", Outcome: "Unauthenticated",
				Peer: fmt.Sprintf("10.%d.%d.%d:1", host/65536%256, host/256%256, host%256), Reason: "no credentials"})
			host++
		}
	}
	for round := range rounds {
		flooded := false
		r.flush(func(audit.Entry) error {
			if !flooded { // refusals counted while the flush holds the old groups
				flooded = true
				flood()
			}
			return audit.ErrBusy
		})
		r.mu.Lock()
		groups := len(r.counts)
		r.mu.Unlock()
		if groups > refusalKeys+1 { // the anonymous groups and one catch-all
			t.Fatalf("round %d: %d counted groups, bound %d", round, groups, refusalKeys+1)
		}
		flood()
	}
	var written uint64
	catchAll := false
	r.flush(func(e audit.Entry) error {
		written += e.Count
		catchAll = catchAll || (e.Peer == "*" && e.Reason == manyReason)
		return nil
	})
	if want := uint64(host); written != want || !catchAll {
		t.Fatalf("%d refusals written (want %d), catch-all written: %v", written, want, catchAll)
	}
}
