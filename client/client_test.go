package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// counter counts RPC attempts per method, as the server would see them.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) interceptor() grpc.DialOption {
	return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c.mu.Lock()
		c.n[method]++
		c.mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

func (c *counter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n["/tokenvault.v1.TokenVault/"+method]
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func dial(t *testing.T, addr string, opts ...client.Option) *client.Client {
	c, err := client.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTypedErrors(t *testing.T) {
	c := dial(t, addr)
	ctx := context.Background()
	res, err := c.Detokenize(ctx, "p", "4111110000001111", "bad\x00")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, client.ErrNotFound) || status.Code(res[0].Err) != codes.NotFound {
		t.Fatalf("unknown token: %v", res[0].Err)
	}
	if !errors.Is(res[1].Err, client.ErrInvalidArgument) {
		t.Fatalf("malformed token: %v", res[1].Err)
	}
	_, err = c.Tokenize(ctx, "s", client.Field{Kind: "pan", Value: "4111 1111 1111 1111"}, client.Field{Kind: "pan", Value: "12"})
	var e *client.Error
	if !errors.Is(err, client.ErrInvalidArgument) || !errors.As(err, &e) || e.Field != "fields[1].value" || e.Reason != "INVALID_ARGUMENT" {
		t.Fatalf("invalid field: %#v", err)
	}
	_, err = c.EraseSubject(ctx, "never-seen")
	if !errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrErased) {
		t.Fatalf("erase unknown subject: %v", err)
	}
	for _, tc := range []struct {
		e    client.Error
		want error
	}{
		{client.Error{Code: codes.FailedPrecondition, Reason: "SUBJECT_ERASED"}, client.ErrErased},
		{client.Error{Code: codes.FailedPrecondition, Reason: "RESTRICTED"}, client.ErrFailedPrecondition},
		{client.Error{Code: codes.ResourceExhausted, Reason: "TOKEN_SPACE_EXHAUSTED"}, client.ErrExhausted},
		{client.Error{Code: codes.ResourceExhausted, Reason: "STORAGE_FULL"}, client.ErrStorageFull},
		{client.Error{Code: codes.ResourceExhausted, Reason: "VOLATILE_CAPACITY_EXHAUSTED"}, client.ErrVolatileFull},
		{client.Error{Code: codes.Unavailable, Reason: "KEK_UNAVAILABLE"}, client.ErrUnavailable},
		{client.Error{Code: codes.PermissionDenied}, client.ErrPermissionDenied},
		{client.Error{Code: codes.Unauthenticated}, client.ErrUnauthenticated},
		{client.Error{Code: codes.DeadlineExceeded}, context.DeadlineExceeded},
		{client.Error{Code: codes.Internal}, client.ErrInternal},
	} {
		if err := &tc.e; !errors.Is(err, tc.want) {
			t.Errorf("%v does not match %v", tc.e, tc.want)
		}
	}
}

// TestEraseSubjectReceipt: the client's receipt is the vault's receipt
// type: it holds what the signed file says, and verifies as it is.
func TestEraseSubjectReceipt(t *testing.T) {
	c := dial(t, addr)
	ctx := context.Background()
	if _, err := c.Tokenize(ctx, "receipt-subject", client.Field{Kind: "name", Value: "Ada"}, client.Field{Kind: "email", Value: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	r, err := c.EraseSubject(ctx, "receipt-subject")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.ReceiptPublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "receipt-subject" || r.Records != 2 || r.KeyID != receipt.KeyID(pub) || r.BackupsUndecryptableBy.IsZero() {
		t.Fatalf("receipt = %+v", r.Receipt)
	}
	if err := r.Verify(pub); err != nil {
		t.Fatalf("the returned receipt does not verify: %v", err)
	}
	p, err := receipt.Parse(r.Signed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Marshal(), r.Marshal()) {
		t.Fatalf("the signed file says %+v, the receipt %+v", p, r.Receipt)
	}
}

// TestRetryOnlyWhenSafe: with the server down, calls that are safe to
// repeat are tried again; a random-mode tokenize is tried exactly once.
// When the server comes back, a retrying call succeeds.
func TestRetryOnlyWhenSafe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close() // nothing listens there now

	cnt := newCounter()
	fastReconnect := grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
		BaseDelay: 20 * time.Millisecond, Multiplier: 1.2, MaxDelay: 100 * time.Millisecond}, MinConnectTimeout: time.Second})
	c := dial(t, down, client.WithDialOptions(cnt.interceptor(), fastReconnect), client.WithRetry(4, time.Millisecond, 5*time.Millisecond))
	ctx := context.Background()

	_, err = c.Tokenize(ctx, "s", client.Field{Kind: "pan", Value: "4111111111111111"})
	if !errors.Is(err, client.ErrUnavailable) || cnt.get("Tokenize") != 1 {
		t.Fatalf("random tokenize: %v after %d attempts, want one attempt", err, cnt.get("Tokenize"))
	}
	_, err = c.Tokenize(ctx, "s", client.Field{Kind: "pan", Value: "4111111111111111", Deterministic: true},
		client.Field{Kind: "email", Value: "a@example.com"})
	if !errors.Is(err, client.ErrUnavailable) || cnt.get("Tokenize") != 2 {
		t.Fatalf("a batch with a random field: %v after %d attempts, want one attempt", err, cnt.get("Tokenize")-1)
	}
	_, err = c.Tokenize(ctx, "s", client.Field{Kind: "pan", Value: "4111111111111111", Deterministic: true})
	if !errors.Is(err, client.ErrUnavailable) || cnt.get("Tokenize") != 6 {
		t.Fatalf("deterministic tokenize: %v after %d attempts, want 4", err, cnt.get("Tokenize")-2)
	}
	for name, call := range map[string]func() error{
		"Detokenize": func() error { _, err := c.Detokenize(ctx, "p", "4111110000001111"); return err },
		"Mask":       func() error { _, err := c.Mask(ctx, "4111110000001111"); return err },
		"Decrypt":    func() error { _, err := c.Decrypt(ctx, "p", "", []byte{1}); return err },
		"Encrypt":    func() error { _, err := c.Encrypt(ctx, "s", "", []byte("x")); return err },
	} {
		err := call()
		want := 4
		if name == "Encrypt" {
			want = 1
		}
		if !errors.Is(err, client.ErrUnavailable) || cnt.get(name) != want {
			t.Errorf("%s: %v after %d attempts, want %d", name, err, cnt.get(name), want)
		}
	}

	// Recovery: the server comes up while a patient call is retrying.
	patient := dial(t, down, client.WithDialOptions(fastReconnect), client.WithRetry(200, 20*time.Millisecond, 100*time.Millisecond))
	started := make(chan *app.App, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		dir := t.TempDir()
		a, err := app.Start(context.Background(), config.Config{Listen: down, DataDir: filepath.Join(dir, "d"),
			KEK:     config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "k.age"), IdentityFile: filepath.Join(dir, "id")}},
			Metrics: config.MetricsConfig{Listen: "off"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Error(err)
		}
		started <- a
	}()
	res, err := patient.Detokenize(ctx, "p", "4111110000001111")
	if a := <-started; a != nil {
		defer a.Stop()
	}
	if err != nil || !errors.Is(res[0].Err, client.ErrNotFound) {
		t.Fatalf("retry across the server's start: %v %v", err, res)
	}
}

// TestBatching: concurrent single-item calls are coalesced into few batch
// RPCs, each caller gets its own result, and one bad item fails only its
// caller.
func TestBatching(t *testing.T) {
	cnt := newCounter()
	c := dial(t, addr, client.WithDialOptions(cnt.interceptor()), client.WithBatching(50*time.Millisecond, 100))
	ctx := context.Background()
	const n = 40
	values := make([]string, n)
	tokens := make([]string, n)
	errs := make([]error, n)
	run := func(f func(i int)) {
		var wg sync.WaitGroup
		var ready sync.WaitGroup
		ready.Add(n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ready.Done()
				<-start
				f(i)
			}()
		}
		ready.Wait()
		close(start)
		wg.Wait()
	}
	run(func(i int) {
		values[i] = fmt.Sprintf("+1415555%04d", i)
		if i == 7 {
			values[i] = "not a phone"
		}
		tokens[i], errs[i] = c.TokenizeOne(ctx, "batcher", client.Field{Kind: "phone", Value: values[i]})
	})
	for i := range n {
		if i == 7 {
			var e *client.Error
			if !errors.As(errs[i], &e) || e.Field != "fields[0].value" {
				t.Fatalf("bad item: %v", errs[i])
			}
			continue
		}
		if errs[i] != nil || tokens[i] == "" {
			t.Fatalf("item %d failed: %v", i, errs[i])
		}
	}
	if got := cnt.get("Tokenize"); got >= n/2 {
		t.Fatalf("%d Tokenize RPCs for %d concurrent calls: not batched", got, n)
	}

	var revealed [n]string
	var failed atomic.Int32
	run(func(i int) {
		if i == 7 {
			return
		}
		v, err := c.DetokenizeOne(ctx, "support", tokens[i])
		if err != nil {
			failed.Add(1)
		}
		revealed[i] = v
	})
	for i := range n {
		if i != 7 && revealed[i] != values[i] {
			t.Fatalf("caller %d got another caller's value", i)
		}
	}
	if failed.Load() != 0 {
		t.Fatalf("%d detokenize calls failed", failed.Load())
	}
	if got := cnt.get("Detokenize"); got >= n/2 {
		t.Fatalf("%d Detokenize RPCs for %d concurrent calls: not batched", got, n-1)
	}
	if _, err := c.MaskOne(ctx, "4111110000001111"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("MaskOne of an unknown token: %v", err)
	}
}
