package client

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tokenvault/tokenvault/errinfo"
)

// Automatic batching: single-item calls made concurrently are sent as one
// batch RPC. Calls are grouped by what the batch RPC has in common (the
// subject for Tokenize, the purpose for Detokenize), a batch goes out after
// the linger time or as soon as it is full, and each caller gets its own
// item's result.

type coalescer[In, Out any] struct {
	linger time.Duration
	max    int
	// run sends one batch. It returns per-item results and errors, or a
	// call-level error for the whole batch.
	run func(ctx context.Context, key string, ins []In) ([]Out, []error, error)
	// timeout bounds a batch RPC (callers' own contexts only bound their
	// wait: the batch serves several of them).
	timeout time.Duration

	mu   sync.Mutex
	open map[string]*pendingBatch[In, Out]
}

type pendingBatch[In, Out any] struct {
	ins     []In
	waiters []chan itemResult[Out]
}

type itemResult[Out any] struct {
	out Out
	err error
}

func (c *coalescer[In, Out]) do(ctx context.Context, key string, in In) (Out, error) {
	ch := make(chan itemResult[Out], 1)
	c.mu.Lock()
	b := c.open[key]
	if b == nil {
		b = &pendingBatch[In, Out]{}
		c.open[key] = b
		time.AfterFunc(c.linger, func() { c.flush(key, b) })
	}
	b.ins = append(b.ins, in)
	b.waiters = append(b.waiters, ch)
	full := len(b.ins) >= c.max
	if full {
		delete(c.open, key)
	}
	c.mu.Unlock()
	if full {
		go c.fire(key, b)
	}
	select {
	case r := <-ch:
		return r.out, r.err
	case <-ctx.Done():
		var zero Out
		return zero, ctx.Err()
	}
}

// flush sends b if it is still open (it may have been sent when full).
func (c *coalescer[In, Out]) flush(key string, b *pendingBatch[In, Out]) {
	c.mu.Lock()
	if c.open[key] != b {
		c.mu.Unlock()
		return
	}
	delete(c.open, key)
	c.mu.Unlock()
	c.fire(key, b)
}

func (c *coalescer[In, Out]) fire(key string, b *pendingBatch[In, Out]) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ins, waiters := b.ins, b.waiters
	for len(ins) > 0 {
		outs, errs, err := c.run(ctx, key, ins)
		if err == nil {
			for i, w := range waiters {
				w <- itemResult[Out]{outs[i], errs[i]}
			}
			return
		}
		// An invalid item fails a whole batch request before anything is
		// stored: fail only the caller at fault and send the others again.
		i, ok := faultyItem(err, len(ins))
		if !ok {
			for _, w := range waiters {
				w <- itemResult[Out]{err: err}
			}
			return
		}
		waiters[i] <- itemResult[Out]{err: err}
		ins = append(ins[:i:i], ins[i+1:]...)
		waiters = append(waiters[:i:i], waiters[i+1:]...)
	}
}

// faultyItem finds the item an INVALID_ARGUMENT error names, from the
// field path in its BadRequest detail ("fields[3].value", "tokens[0]").
func faultyItem(err error, n int) (int, bool) {
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument {
		return 0, false
	}
	open, close := strings.IndexByte(e.Field, '['), strings.IndexByte(e.Field, ']')
	if open < 0 || close < open {
		return 0, false
	}
	i, perr := strconv.Atoi(e.Field[open+1 : close])
	if perr != nil || i < 0 || i >= n {
		return 0, false
	}
	return i, true
}

func (c *Client) initBatching() {
	timeout := c.s.callTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	max := c.s.maxBatch
	if max == 0 { // batching off: every call is its own batch of one
		max = 1
	}
	c.detokenizeB = &coalescer[string, Result]{linger: c.s.linger, max: max, timeout: timeout, open: map[string]*pendingBatch[string, Result]{},
		run: func(ctx context.Context, purpose string, tokens []string) ([]Result, []error, error) {
			res, err := c.Detokenize(ctx, purpose, tokens...)
			return res, resultErrs(res), err
		}}
	c.maskB = &coalescer[string, Result]{linger: c.s.linger, max: max, timeout: timeout, open: map[string]*pendingBatch[string, Result]{},
		run: func(ctx context.Context, _ string, tokens []string) ([]Result, []error, error) {
			res, err := c.Mask(ctx, tokens...)
			return res, resultErrs(res), err
		}}
	c.tokenizeB = &coalescer[Field, string]{linger: c.s.linger, max: max, timeout: timeout, open: map[string]*pendingBatch[Field, string]{},
		run: func(ctx context.Context, subject string, fields []Field) ([]string, []error, error) {
			toks, err := c.Tokenize(ctx, subject, fields...)
			return toks, make([]error, len(toks)), err
		}}
}

func resultErrs(res []Result) []error {
	errs := make([]error, len(res))
	for i, r := range res {
		errs[i] = r.Err
	}
	return errs
}

// DetokenizeOne reveals one token (batched with concurrent calls of the
// same purpose when WithBatching is on).
func (c *Client) DetokenizeOne(ctx context.Context, purpose, token string) (string, error) {
	r, err := c.detokenizeB.do(ctx, purpose, token)
	if err == nil {
		err = r.Err
	}
	return r.Value, err
}

// MaskOne masks one token (batched with concurrent calls when WithBatching
// is on).
func (c *Client) MaskOne(ctx context.Context, token string) (string, error) {
	r, err := c.maskB.do(ctx, "", token)
	if err == nil {
		err = r.Err
	}
	return r.Value, err
}

// TokenizeOne tokenizes one field (batched with concurrent calls for the
// same subject when WithBatching is on). A batch is retried only if every
// field in it is deterministic.
func (c *Client) TokenizeOne(ctx context.Context, subject string, f Field) (string, error) {
	if subject == "" {
		return "", &Error{Code: codes.InvalidArgument, Reason: errinfo.InvalidArgument, Field: "subject_id", Message: "subject_id: must not be empty"}
	}
	tok, err := c.tokenizeB.do(ctx, subject, f)
	if e := (*Error)(nil); errors.As(err, &e) && e.Field != "" {
		// The field path named the item inside the batch; for the caller
		// it is their only field.
		e2 := *e
		if i := strings.IndexByte(e2.Field, ']'); strings.HasPrefix(e2.Field, "fields[") && i > 0 {
			e2.Field = "fields[0]" + e2.Field[i+1:]
			e2.Message = strings.Replace(e2.Message, e.Field, e2.Field, 1)
		}
		return "", &e2
	}
	return tok, err
}
