package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// ErasureEvent tells a downstream service that a subject was erased, so
// that it deletes its own copies.
type ErasureEvent struct {
	// Sequence is the erasure's place in commit order (from 1).
	Sequence uint64 `json:"sequence"`
	// Subject is the erased subject's id; empty if the event outlived the
	// server's erasures.event_retention before this consumer got it.
	Subject  string    `json:"subject_id,omitempty"`
	ErasedAt time.Time `json:"erased_at"`
	// BlobKeyID (hex) is carried by every field-encryption blob of the
	// subject at offset 2 (16 bytes): how to find them in your database.
	BlobKeyID string `json:"blob_key_id"`
	// SignedReceipt is the signed erasure receipt file (empty if the
	// server does not sign receipts, or the erasure was interrupted).
	SignedReceipt []byte `json:"signed_receipt,omitempty"`
}

// WatchErasures calls fn with every erasure event the consumer has not
// acknowledged, in commit order, and then with new ones as they happen,
// until ctx ends (it then returns ctx's error) or fn fails (its error is
// returned, and that event stays unacknowledged). After fn returns nil
// the event is acknowledged, and never delivered to this consumer again.
//
// Delivery is at least once: if the connection, the server or this
// process fails between fn and the acknowledgement, fn gets the event
// again, so fn must be idempotent (deleting what is already deleted).
// A broken stream is reopened (with backoff while the server is
// unavailable).
func (c *Client) WatchErasures(ctx context.Context, consumer string, fn func(ErasureEvent) error) error {
	return c.WatchErasuresWith(ctx, consumer, WatchOptions{}, fn)
}

// WatchOptions are WatchErasuresWith's options.
type WatchOptions struct {
	// OnRetry, if set, is called each time the stream failed with a
	// retryable error (the server unavailable or gone) and is reopened
	// after wait: without it a watcher of a server that is down waits in
	// silence. err is a *Error or io.EOF, and never carries an event.
	OnRetry func(err error, wait time.Duration)
}

// WatchErasuresWith is WatchErasures with options.
func (c *Client) WatchErasuresWith(ctx context.Context, consumer string, o WatchOptions, fn func(ErasureEvent) error) error {
	backoff := 100 * time.Millisecond
	for {
		err := c.watchOnce(ctx, consumer, fn, func() { backoff = 100 * time.Millisecond })
		var fnErr callbackError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case ctx.Err() != nil:
			return ctx.Err()
		case !retryableWatch(err):
			return err
		}
		if o.OnRetry != nil {
			o.OnRetry(err, backoff)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// ackTimeout bounds an acknowledgement made after the caller's context
// ended.
const ackTimeout = 10 * time.Second

// callbackError carries fn's error out of watchOnce.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

func retryableWatch(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Code == codes.Unavailable
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func (c *Client) watchOnce(ctx context.Context, consumer string, fn func(ErasureEvent) error, delivered func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.WatchErasures(ctx, &pb.WatchErasuresRequest{Consumer: consumer})
	if err != nil {
		return fromStatus(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF // the server ended the stream (shutting down)
			}
			return fromStatus(err)
		}
		ev := ErasureEvent{Sequence: m.GetSequence(), Subject: m.GetSubjectId(), ErasedAt: m.GetErasedAt().AsTime(),
			BlobKeyID: fmt.Sprintf("%x", m.GetBlobKeyId()), SignedReceipt: m.GetSignedReceipt()}
		if ctx.Err() != nil {
			return ctx.Err() // ended while this one was in flight: not handed over
		}
		if err := fn(ev); err != nil {
			return callbackError{err}
		}
		// fn handled the event: acknowledge it even if ctx ended meanwhile
		// (a caller that stops after its last event must not get it again).
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		_, err = c.rpc.AckErasures(actx, &pb.AckErasuresRequest{Consumer: consumer, Sequence: ev.Sequence})
		acancel()
		if err != nil {
			return fromStatus(err)
		}
		delivered()
	}
}
