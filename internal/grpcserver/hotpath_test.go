package grpcserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestHotPathAllocations: the per-call steps of the interceptor chain
// that a precomputed value makes free allocate nothing (issue 18): the
// caller's name for the access line and the audit entry (formatted once,
// in the tap), the limiter's lookup of a known identity, and the peer
// address of a call that is never audited (formatted only when an entry
// is written).
func TestHotPathAllocations(t *testing.T) {
	ctx := withIdentity(context.Background(), auth.Identity{Name: "bench", Method: auth.MethodAPIKey})
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 40000}})
	if n := testing.AllocsPerRun(100, func() { callerAttr(ctx) }); n != 0 {
		t.Errorf("callerAttr: %v allocations, want 0", n)
	}
	if a := callerAttr(ctx); a.Value.String() != "api_key:bench" {
		t.Errorf("caller %q", a.Value.String())
	}

	l, err := NewLimiter(Limits{Tokenize: Rate{PerSecond: 1e6, Burst: 1e6}})
	if err != nil {
		t.Fatal(err)
	}
	id := auth.Identity{Name: "bench", Method: auth.MethodAPIKey}
	now := time.Now()
	first := l.bucketsOf(id, now)
	if n := testing.AllocsPerRun(100, func() {
		if l.bucketsOf(id, now) != first {
			t.Fatal("a known identity got new buckets")
		}
	}); n != 0 {
		t.Errorf("bucketsOf, known identity: %v allocations, want 0", n)
	}
	if l.bucketsOf(auth.Identity{Name: "bench", Method: auth.MethodMTLS}, now) == first {
		t.Error("an API key and a certificate of the same name share buckets")
	}

	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(audit.Options{Path: filepath.Join(t.TempDir(), "audit.jsonl"), SigningKey: key,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	g, err := NewGuard(GuardConfig{Audit: log})
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"}}}
	c := g.begin(ctx, pb.TokenVault_Tokenize_FullMethodName, req)
	if c.rec != nil || c.entry.Peer != "" {
		t.Fatalf("a random tokenize: record %v, peer %q formatted up front", c.rec, c.entry.Peer)
	}
	c.withPeer()
	if c.entry.Peer != "10.1.2.3:40000" {
		t.Fatalf("peer %q", c.entry.Peer)
	}

	// An audited call's record comes with the call: one allocation in all.
	det := &pb.DetokenizeRequest{Tokens: []string{"tok"}, Purpose: "bench"}
	if n := testing.AllocsPerRun(100, func() { g.begin(ctx, pb.TokenVault_Detokenize_FullMethodName, det) }); n != 1 {
		t.Errorf("begin, audited call: %v allocations, want 1", n)
	}
	if c := g.begin(ctx, pb.TokenVault_Detokenize_FullMethodName, det); c.rec == nil || c.rec.hash("tok") != log.TokenHash("tok") {
		t.Error("an audited call has no record, or one that hashes tokens differently from the audit log")
	}
}

// TestFinishBound: the audit wait's context is shared by calls that start
// within finishSlack of each other (no allocation for them), its deadline
// is always between auditFinishTimeout − finishSlack and
// auditFinishTimeout away, and renewing it leaves the previous one
// running for the calls still waiting on it.
func TestFinishBound(t *testing.T) {
	var f finishBound
	t0 := time.Unix(1_800_000_000, 0)
	within := func(ctx context.Context, now time.Time) {
		t.Helper()
		d, ok := ctx.Deadline()
		if !ok || d.Sub(now) < auditFinishTimeout-finishSlack || d.Sub(now) > auditFinishTimeout {
			t.Fatalf("deadline %v away at %v (ok %v)", d.Sub(now), now, ok)
		}
	}
	first := f.get(t0)
	within(first, t0)
	for _, dt := range []time.Duration{0, finishSlack / 2, finishSlack} {
		if got := f.get(t0.Add(dt)); got != first {
			t.Fatalf("%v later: a new context", dt)
		}
		within(first, t0.Add(dt))
	}
	if n := testing.AllocsPerRun(100, func() { f.get(t0.Add(finishSlack / 2)) }); n != 0 {
		t.Errorf("get: %v allocations, want 0", n)
	}
	later := t0.Add(finishSlack + time.Millisecond)
	renewed := f.get(later)
	if renewed == first {
		t.Fatal("not renewed after finishSlack")
	}
	within(renewed, later)
	if first.Err() != nil {
		t.Fatalf("renewing ended the previous context: %v", first.Err())
	}
}
