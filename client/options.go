package client

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Option configures a Client.
type Option interface{ apply(*settings) }

type optionFunc func(*settings)

func (f optionFunc) apply(s *settings) { f(s) }

type settings struct {
	dial        []grpc.DialOption
	attempts    int
	backoff     time.Duration
	maxBackoff  time.Duration
	callTimeout time.Duration
	linger      time.Duration
	maxBatch    int
}

func defaults() settings {
	return settings{attempts: 4, backoff: 50 * time.Millisecond, maxBackoff: 2 * time.Second, callTimeout: 10 * time.Second}
}

// WithDialOptions passes gRPC dial options (transport credentials,
// interceptors, ...). Without transport credentials the connection is
// plaintext, which the server allows only on loopback.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return optionFunc(func(s *settings) { s.dial = append(s.dial, opts...) })
}

// WithRetry sets how often calls that are safe to repeat are tried
// (attempts, including the first; 1 disables retries) and the backoff
// between tries (doubling from base up to max, with jitter). Only
// UNAVAILABLE failures are retried, and only for calls whose repetition
// cannot create anything twice: Detokenize, Mask, Decrypt, key status, and
// Tokenize when every field is deterministic. A random-mode Tokenize that
// failed or timed out is never repeated: the first try may have stored a
// token, and a blind retry would store a second one. Default: 4 attempts,
// 50ms to 2s.
func WithRetry(attempts int, base, max time.Duration) Option {
	return optionFunc(func(s *settings) {
		s.attempts, s.backoff, s.maxBackoff = max1(attempts), base, max
	})
}

// WithCallTimeout bounds each call whose context has no deadline (default
// 10s). Retries happen within it.
func WithCallTimeout(d time.Duration) Option {
	return optionFunc(func(s *settings) { s.callTimeout = d })
}

// WithBatching makes the single-item methods (TokenizeOne, DetokenizeOne,
// MaskOne) gather concurrent calls into batch RPCs: a batch is sent after
// linger, or at once when it holds max items (at most 1000, the server's
// limit). Off by default.
func WithBatching(linger time.Duration, max int) Option {
	return optionFunc(func(s *settings) { s.linger, s.maxBatch = linger, min(max1(max), 1000) })
}

func max1(n int) int { return max(n, 1) }

// withTimeout applies the call timeout when ctx has no deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.s.callTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.s.callTimeout)
}

// do runs one RPC, retrying it (if safe) on UNAVAILABLE with backoff, and
// converts the final error into an *Error.
func (c *Client) do(ctx context.Context, safe bool, rpc func(ctx context.Context) error) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	attempts := 1
	if safe {
		attempts = c.s.attempts
	}
	delay := c.s.backoff
	for try := 1; ; try++ {
		err := rpc(ctx)
		if err == nil || try >= attempts || status.Code(err) != codes.Unavailable {
			return fromStatus(err)
		}
		// Full jitter in [delay/2, delay]: many clients failing together
		// must not come back together.
		wait := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return fromStatus(err)
		case <-time.After(wait):
		}
		delay = min(delay*2, c.s.maxBackoff)
	}
}
