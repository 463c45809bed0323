package echo

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

func dial(t *testing.T, opts ...grpc.ServerOption) pb.TokenVaultClient {
	t.Helper()
	gs, addr, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewTokenVaultClient(cc)
}

func TestWithDelayRefusesNonPositive(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Millisecond} {
		if _, err := WithDelay(d); err == nil {
			t.Fatalf("WithDelay(%v): no error", d)
		}
	}
}

// TestWithDelay: a delayed echo still answers like the echo, never before
// the delay, and a call whose deadline comes first is answered with
// DeadlineExceeded without its handler running (the server sees the
// deadline: gRPC sends it along).
func TestWithDelay(t *testing.T) {
	const d = 200 * time.Millisecond
	o, err := WithDelay(d)
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64 // calls that got past the delay
	c := dial(t, o, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		handled.Add(1)
		return h(ctx, req)
	}))
	ctx := context.Background()
	tokenize := func() {
		t.Helper()
		start := time.Now()
		resp, err := c.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Value: "v"}}})
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < d {
			t.Fatalf("answered after %v, before the %v delay", took, d)
		}
		if len(resp.GetTokens()) != 1 || resp.GetTokens()[0] != "v" {
			t.Fatalf("tokens %q, want the value echoed", resp.GetTokens())
		}
	}
	tokenize()
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	_, err = c.Detokenize(short, &pb.DetokenizeRequest{Tokens: []string{"t"}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call whose deadline is shorter than the delay: %v, want DeadlineExceeded", err)
	}
	// By the time this call is answered (after d), the short call's own
	// wait has long ended at its 5 ms deadline on the server.
	tokenize()
	if n := handled.Load(); n != 2 {
		t.Fatalf("%d calls reached the handler, want 2: the one past its deadline must not", n)
	}
}

// TestNoDelay: the plain echo answers its calls (the baseline every
// ratio divides by).
func TestNoDelay(t *testing.T) {
	c := dial(t)
	resp, err := c.Detokenize(context.Background(), &pb.DetokenizeRequest{Tokens: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != 2 || resp.GetResults()[1].GetValue() != "b" {
		t.Fatalf("results %v", resp.GetResults())
	}
}
