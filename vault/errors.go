package vault

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on (the gRPC layer maps each to one
// status code). Messages never contain values, tokens or keys.
var (
	// ErrInvalidArgument: a request field is malformed or out of limits.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: unknown token, subject or blob key.
	ErrNotFound = errors.New("not found")
	// ErrErased: the data belonged to a subject that has been erased.
	ErrErased = errors.New("subject erased")
	// ErrExhausted: no free token could be found for a value (tiny token
	// spaces such as 13-digit card numbers with the same first 6/last 4).
	ErrExhausted = errors.New("token space exhausted")
	// ErrFailedPrecondition: the operation is not allowed in the current
	// state (e.g. retiring a KEK version that stored keys still use).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrCorrupt: stored data failed authentication or parsing. Never the
	// caller's fault; logged and reported as an internal error.
	ErrCorrupt = errors.New("stored data corrupt")
	// ErrStorageFull: the store's filesystem is (nearly) full, so it
	// refuses writes before any of them starts; nothing is half-written,
	// reads still work, and writes succeed again once space is freed.
	ErrStorageFull = errors.New("store: disk full")
	// ErrStoreUnavailable: the store cannot be reached (a database server
	// down, restarting or failing over, a connection lost mid-call). The
	// call's outcome may be unknown (a write cut short may or may not
	// have committed); retrying later is safe for what is idempotent.
	ErrStoreUnavailable = errors.New("store unavailable")

	// ErrRestricted: processing of the subject is restricted
	// (RestrictSubject); values are not revealed. A FailedPrecondition.
	ErrRestricted = fmt.Errorf("%w: processing of the subject is restricted", ErrFailedPrecondition)
	// ErrExpired: the token's retention period is over. A NotFound, like
	// the purged token it is about to become, so callers see the same
	// answer before and after the background purge.
	ErrExpired = fmt.Errorf("%w: retention period over", ErrNotFound)
	// ErrUnsupported: the operation needs an optional Store capability
	// (store.go) that the store lacks. A FailedPrecondition: the
	// deployment, not the request, is at fault.
	// ErrNotConfigured: this vault lacks a key a call needs (a signing key,
	// the ledger key); the error's text says which, and what to do.
	ErrNotConfigured = errors.New("not configured")
	ErrUnsupported   = fmt.Errorf("%w: not supported by the store", ErrFailedPrecondition)
)

// FieldError names the request field at fault. It unwraps to one of the
// sentinels above.
type FieldError struct {
	Field  string // e.g. "fields[3].value"
	Reason string // never contains the field's value
	Err    error  // the sentinel
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidArgument}
}
