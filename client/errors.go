package client

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/errinfo"
)

// Typed errors. Every error this package returns for a failed call or item
// is an *Error, which matches one of these with errors.Is and still works
// with status.Code.
var (
	ErrInvalidArgument = errors.New("tokenvault: invalid argument")
	// ErrNotFound: unknown token, or no data for the subject. Tokens of an
	// erased subject are NotFound once the erasure's purge has run.
	ErrNotFound = errors.New("tokenvault: not found")
	// ErrErased: the data is known to belong to an erased subject.
	ErrErased = errors.New("tokenvault: subject erased")
	// ErrConsentRequired: a reveal item for a purpose that rests on
	// consent, of a subject that has not consented to it or withdrew
	// consent (GrantConsent); the message names the purpose.
	ErrConsentRequired = errors.New("tokenvault: consent required")
	// ErrFailedPrecondition: not allowed in the current state.
	ErrFailedPrecondition = errors.New("tokenvault: failed precondition")
	// ErrHeld: the value is under a legal hold after its subject's
	// erasure, revealed only for the hold class's purposes (the message
	// names them); another purpose was given.
	ErrHeld = errors.New("tokenvault: held after erasure for other purposes")
	// ErrExhausted: no free token for the value (tiny token spaces).
	ErrExhausted = errors.New("tokenvault: token space exhausted")
	// ErrStorageFull: the server's disk is full; it refuses writes until
	// space is freed (nothing of the call was written) and still serves
	// reveals. Retry later.
	ErrStorageFull = errors.New("tokenvault: server storage full")
	// ErrRateLimited: the caller's identity is over a per-identity limit
	// (server config "limits"); the message says when to retry.
	ErrRateLimited = errors.New("tokenvault: rate limited")
	// ErrVolatileFull: the server process holds its maximum of volatile
	// tokens (card security codes); nothing was stored. Retry later.
	ErrVolatileFull     = errors.New("tokenvault: volatile token capacity reached")
	ErrUnauthenticated  = errors.New("tokenvault: unauthenticated")
	ErrPermissionDenied = errors.New("tokenvault: permission denied")
	// ErrUnavailable: the server, its key-encryption key provider, its
	// audit log or its store's database (reason errinfo.StoreUnavailable,
	// e.g. during a database failover) is unavailable; safe calls are
	// retried automatically (see WithRetry).
	ErrUnavailable = errors.New("tokenvault: unavailable")
	// ErrUnimplemented: the server does not offer the call (an older
	// server, or backups on a store without them).
	ErrUnimplemented = errors.New("tokenvault: unimplemented")
	ErrInternal      = errors.New("tokenvault: internal error")
)

// ErrVolatileHolderUnavailable: the volatile token (a card security code)
// is held by another server replica that the one called cannot ask (not
// among its peers, unreachable, or refusing the forward). Nothing was
// revealed; retry later. A reason of its own (not ErrUnavailable), like
// ErrStorageFull's.
var ErrVolatileHolderUnavailable = errors.New("tokenvault: the replica holding the volatile token is unavailable")

// Error is a failed call or item.
type Error struct {
	Code    codes.Code
	Reason  string // machine-readable cause from the server, one of package errinfo's (e.g. errinfo.SubjectErased)
	Field   string // the request field at fault, when the server named one
	Message string
}

func (e *Error) Error() string { return "tokenvault: " + e.Code.String() + ": " + e.Message }

// GRPCStatus lets status.Code and status.Convert see through Error.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Is matches the sentinel for the error's reason or code.
func (e *Error) Is(target error) bool { return e.sentinel() == target }

// sentinel goes by the reason where it says more than the code, and by
// the code otherwise (refusals made before the server read the request
// carry no reason, see errinfo.Unauthenticated).
func (e *Error) sentinel() error {
	switch e.Reason {
	case errinfo.SubjectErased:
		return ErrErased
	case errinfo.ConsentRequired:
		return ErrConsentRequired
	case errinfo.HeldAfterErasure:
		return ErrHeld
	case errinfo.TokenSpaceExhausted:
		return ErrExhausted
	case errinfo.StorageFull:
		return ErrStorageFull
	case errinfo.RateLimited:
		return ErrRateLimited
	case errinfo.VolatileCapacityExhausted:
		return ErrVolatileFull
	case errinfo.VolatileHolderUnavailable:
		return ErrVolatileHolderUnavailable
	}
	switch e.Code {
	case codes.InvalidArgument:
		return ErrInvalidArgument
	case codes.NotFound:
		return ErrNotFound
	case codes.FailedPrecondition:
		return ErrFailedPrecondition
	case codes.ResourceExhausted:
		return ErrExhausted
	case codes.Unauthenticated:
		return ErrUnauthenticated
	case codes.PermissionDenied:
		return ErrPermissionDenied
	case codes.Unavailable:
		return ErrUnavailable
	case codes.Unimplemented:
		return ErrUnimplemented
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	default:
		return ErrInternal
	}
}

// AsError converts the error of a call made through the generated stubs
// (Raw, KeyAdmin, BackupAdmin) into an *Error, as this package's methods
// return them. nil stays nil, and an error that is not a gRPC status
// (io.EOF ending a stream) stays as it is.
func AsError(err error) error { return fromStatus(err) }

// fromStatus converts a call's error (nil stays nil; context errors stay
// as they are).
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	if e := (*Error)(nil); errors.As(err, &e) {
		return err // converted already
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: s.Code(), Message: s.Message()}
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason = d.GetReason()
		case *errdetails.BadRequest:
			if v := d.GetFieldViolations(); len(v) > 0 {
				e.Field = v[0].GetField()
			}
		}
	}
	return e
}
