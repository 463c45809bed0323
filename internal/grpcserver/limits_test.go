package grpcserver

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// fakeClock is the limiter's time, moved by hand (no sleeping in tests).
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTestLimiter(t *testing.T, l Limits) (*Limiter, *fakeClock) {
	t.Helper()
	lim, err := NewLimiter(l)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	lim.now = clk.now
	return lim, clk
}

// fields makes n random fields followed by d deterministic ones.
func fields(n, d int) []*pb.Field {
	var out []*pb.Field
	for range n {
		out = append(out, &pb.Field{Kind: pb.Kind_KIND_EMAIL, Value: "x@example.com"})
	}
	for range d {
		out = append(out, &pb.Field{Kind: pb.Kind_KIND_EMAIL, Value: "x@example.com",
			Options: &pb.TokenizeOptions{Mode: pb.TokenMode_TOKEN_MODE_DETERMINISTIC}})
	}
	return out
}

func wantLimited(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("got %v, want a rate-limit refusal", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%q does not say %q", err, p)
		}
	}
}

func TestLimiterDeterministic(t *testing.T) {
	lim, clk := newTestLimiter(t, Limits{Tokenize: Rate{PerSecond: 100, Burst: 1000}, Deterministic: Rate{PerSecond: 2, Burst: 4}})
	a := auth.Identity{Name: "a", Method: auth.MethodAPIKey}
	if err := lim.admitTokenize(a, fields(1, 4)); err != nil {
		t.Fatal(err)
	}
	// The bucket is empty: the next deterministic field waits 0.5 s. The
	// field named is the call's first deterministic one.
	wantLimited(t, lim.admitTokenize(a, fields(2, 1)), "fields[2].options.mode:", "api_key:a", "2 deterministic fields a second, at most 4 at once", "retry in 500ms")
	// Random fields are not held back by the deterministic bucket.
	if err := lim.admitTokenize(a, fields(10, 0)); err != nil {
		t.Fatal(err)
	}
	clk.add(500 * time.Millisecond)
	if err := lim.admitTokenize(a, fields(0, 1)); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
	// A call larger than the burst can never pass: it says so.
	wantLimited(t, lim.admitTokenize(a, fields(0, 5)), "fields[0].options.mode:", "5 deterministic fields in one call", "send smaller batches")
	// Each identity has its own buckets; an API key and a certificate of
	// the same name are different identities.
	for _, other := range []auth.Identity{{Name: "b", Method: auth.MethodAPIKey}, {Name: "a", Method: auth.MethodMTLS}} {
		if err := lim.admitTokenize(other, fields(0, 4)); err != nil {
			t.Fatalf("%s: %v", other, err)
		}
	}
}

func TestLimiterTokenize(t *testing.T) {
	lim, clk := newTestLimiter(t, Limits{Tokenize: Rate{PerSecond: 10, Burst: 20}, Deterministic: Rate{PerSecond: 10, Burst: 20}})
	a := auth.Identity{Name: "spiffe://x/a", Method: auth.MethodMTLS}
	if err := lim.admitTokenize(a, fields(15, 0)); err != nil {
		t.Fatal(err)
	}
	// 5 left: a call of 6 deterministic fields has room in the
	// deterministic bucket but not in the tokenize one, and takes from
	// neither.
	wantLimited(t, lim.admitTokenize(a, fields(0, 6)), "fields:", "spiffe://x/a may tokenize 10 fields a second, at most 20 at once", "retry in 100ms")
	if err := lim.admitTokenize(a, fields(5, 0)); err != nil {
		t.Fatalf("a refused call took from the bucket: %v", err)
	}
	wantLimited(t, lim.admitTokenize(a, fields(1, 0)), "fields:")
	clk.add(2 * time.Second) // full again
	if err := lim.admitTokenize(a, fields(0, 20)); err != nil {
		t.Fatal(err)
	}
	wantLimited(t, lim.admitTokenize(a, fields(21, 0)), "21 fields in one call", "send smaller batches")
}

// TestLimiterOff: a nil limiter, and rates <= 0, limit nothing.
func TestLimiterOff(t *testing.T) {
	a := auth.Identity{Name: "a", Method: auth.MethodAPIKey}
	var none *Limiter
	if err := none.admitTokenize(a, fields(1000, 1000)); err != nil {
		t.Fatal(err)
	}
	lim, _ := newTestLimiter(t, Limits{Tokenize: Rate{PerSecond: -1}, Deterministic: Rate{PerSecond: 1, Burst: 1}})
	for range 3 {
		if err := lim.admitTokenize(a, fields(1000, 0)); err != nil {
			t.Fatal(err)
		}
	}
	wantLimited(t, lim.admitTokenize(a, fields(0, 2)), "deterministic")
}

func TestNewLimiterRefuses(t *testing.T) {
	for _, l := range []Limits{
		{Tokenize: Rate{PerSecond: 1, Burst: 0}},
		{Deterministic: Rate{PerSecond: 1, Burst: -1}},
		{Tokenize: Rate{PerSecond: math.NaN(), Burst: 1}},
		{Deterministic: Rate{PerSecond: math.Inf(1), Burst: 1}},
	} {
		if _, err := NewLimiter(l); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
}

// TestLimiterForgetsOnlyFullBuckets: past maxIdle identities, buckets that
// have refilled are dropped (a full bucket is a new one) and the others
// kept, so neither the map nor an identity's debt grows without bound.
func TestLimiterForgetsOnlyFullBuckets(t *testing.T) {
	lim, clk := newTestLimiter(t, Limits{Tokenize: Rate{PerSecond: 1, Burst: 10}, Deterministic: Rate{PerSecond: 1, Burst: 10}})
	hot := auth.Identity{Name: "hot", Method: auth.MethodAPIKey}
	if err := lim.admitTokenize(hot, fields(10, 0)); err != nil {
		t.Fatal(err)
	}
	for i := range maxIdle {
		if err := lim.admitTokenize(auth.Identity{Name: "id" + strconv.Itoa(i), Method: auth.MethodAPIKey}, fields(1, 0)); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(time.Second) // the others are full again, hot holds 1
	if err := lim.admitTokenize(auth.Identity{Name: "new", Method: auth.MethodAPIKey}, fields(1, 0)); err != nil {
		t.Fatal(err)
	}
	if n := len(lim.byID); n != 2 {
		t.Fatalf("%d identities kept, want hot and new", n)
	}
	wantLimited(t, lim.admitTokenize(hot, fields(2, 0)), "api_key:hot")
}

// TestLimiterConcurrent: calls racing on one identity get exactly the
// burst, never more.
func TestLimiterConcurrent(t *testing.T) {
	lim, _ := newTestLimiter(t, Limits{Tokenize: Rate{PerSecond: 1e-9, Burst: 500}, Deterministic: Rate{PerSecond: 1e-9, Burst: 200}})
	a := auth.Identity{Name: "a", Method: auth.MethodAPIKey}
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if lim.admitTokenize(a, fields(0, 1)) == nil {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if admitted != 200 {
		t.Fatalf("%d deterministic fields admitted, want the burst of 200", admitted)
	}
	if err := lim.admitTokenize(a, fields(300, 0)); err != nil {
		t.Fatalf("the tokenize bucket should have 300 left: %v", err)
	}
	wantLimited(t, lim.admitTokenize(a, fields(1, 0)), "fields:")
}
