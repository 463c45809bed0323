package grpcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail attached to
// every error status; its Reason (package errinfo) is the machine-readable
// cause clients branch on (the client package maps it to typed errors).
const ErrorDomain = errinfo.Domain

// Errors of this package and of the guard. Each matches a row of the
// table; their texts are written to be sent.
var (
	// errAuditUnavailable: the audit log cannot be written, so the call is
	// refused or its result withheld (audit.go).
	errAuditUnavailable = errors.New("audit log unavailable")
	// errUnknownMethod: a method the guard has no entry for (guard.go).
	// Its text ends the refusal's message.
	errUnknownMethod = errors.New("refused")
	// errNotConfigured: this vault lacks the key a call needs (receipt or
	// backup signing, the ledger key).
	errNotConfigured = vault.ErrNotConfigured
	// errUnsupported: the store cannot do what the call asks (backups).
	errUnsupported = errors.New("not supported")
)

// codeRow maps the errors matching err (errors.Is) to a code and reason.
type codeRow struct {
	err    error
	code   codes.Code
	reason string
	// msg is sent for an error that names no field. "" sends the error's
	// own text: the guard's refusals and this package's errors say what to
	// do about them and hold no value, token or key (auth's texts name the
	// identity and operation only). The vault's texts are not sent unless
	// they name a field: those are written for the caller.
	msg string
}

// codeTable is the one mapping from errors to gRPC codes and reasons:
// handlers, the guard's refusals and the recovery interceptor all go
// through it (toStatus, itemStatus). The first sentinel that matches wins.
// Errors matching none are Internal.
//
// What reaches the client: every status carries an ErrorInfo (domain
// tokenvault, the row's reason) and, when the error names the request
// field at fault (*vault.FieldError, or the guard's fieldError), a
// BadRequest naming it. That includes the refusals the guard makes in its
// tap handle, before the request is read (unauthenticated callers, unknown
// methods), which grpc-go sends as an early abort with the status's
// details (internal/e2e/errors_test.go checks both kinds).
var codeTable = []codeRow{
	{vault.ErrInvalidArgument, codes.InvalidArgument, errinfo.InvalidArgument, "invalid argument"},
	{vault.ErrNotFound, codes.NotFound, errinfo.NotFound, "not found"},
	{vault.ErrErased, codes.FailedPrecondition, errinfo.SubjectErased, "the subject has been erased"},
	{vault.ErrNoConsent, codes.FailedPrecondition, errinfo.ConsentRequired, "the subject has not consented to this purpose"},
	{vault.ErrHeld, codes.FailedPrecondition, errinfo.HeldAfterErasure, "held after erasure for other purposes"},
	{vault.ErrKEKBusy, codes.FailedPrecondition, errinfo.FailedPrecondition, "another replica is rotating, rewrapping or retiring the key-encryption key; retry when it has finished"},
	{vault.ErrFailedPrecondition, codes.FailedPrecondition, errinfo.FailedPrecondition, "failed precondition"},
	{vault.ErrExhausted, codes.ResourceExhausted, errinfo.TokenSpaceExhausted, "token space exhausted"},
	{vault.ErrStorageFull, codes.ResourceExhausted, errinfo.StorageFull, "store: disk full; writes are refused until space is freed (reads still work)"},
	{vault.ErrVolatileFull, codes.ResourceExhausted, errinfo.VolatileCapacityExhausted, "volatile token capacity reached (config volatile.max_tokens); retry later"},
	{vault.ErrPermissionDenied, codes.PermissionDenied, errinfo.PermissionDenied, "permission denied"},
	{kek.ErrUnavailable, codes.Unavailable, errinfo.KEKUnavailable, "the key-encryption key provider is unavailable; retry later"},
	{vault.ErrStoreUnavailable, codes.Unavailable, errinfo.StoreUnavailable, "the store's database is unavailable; retry later"},
	// The guard's refusals.
	{auth.ErrUnauthenticated, codes.Unauthenticated, errinfo.Unauthenticated, ""},
	{auth.ErrPermissionDenied, codes.PermissionDenied, errinfo.PermissionDenied, ""},
	{errUnknownMethod, codes.PermissionDenied, errinfo.PermissionDenied, ""},
	{ErrRateLimited, codes.ResourceExhausted, errinfo.RateLimited, ""},
	{errAuditUnavailable, codes.Unavailable, errinfo.AuditUnavailable, ""},
	// What this vault or its store cannot do.
	{errNotConfigured, codes.FailedPrecondition, errinfo.FailedPrecondition, ""},
	{errUnsupported, codes.Unimplemented, errinfo.Unimplemented, ""},
	// Another replica that holds a volatile token (peer.go).
	{vault.ErrVolatileHolderUnavailable, codes.Unavailable, errinfo.VolatileHolderUnavailable, "the replica holding the volatile token is unavailable; retry later"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, errinfo.DeadlineExceeded, "deadline exceeded"},
	{context.Canceled, codes.Canceled, errinfo.Canceled, "canceled"},
}

// fieldError names the request field at fault in a refusal of the guard
// (the vault's own errors name theirs in a *vault.FieldError). Its text is
// "field: err".
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// ownError is an error of this package whose text reads best without its
// sentinel's (errNotConfigured, errUnsupported).
type ownError struct {
	text string
	is   error
}

func (e *ownError) Error() string { return e.text }
func (e *ownError) Unwrap() error { return e.is }

func notConfigured(text string) error { return &ownError{text, errNotConfigured} }
func unsupported(text string) error   { return &ownError{text, errUnsupported} }

// outcome is what the client is told about an error.
type outcome struct {
	code   codes.Code
	reason string
	msg    string
	field  string // the request field at fault, if known
}

// mapper maps errors to statuses through the table, logging internal
// errors. Server, Admin, BackupAdmin and the Guard share it.
type mapper struct{ log *slog.Logger }

// classify maps err to what is safe to send. Internal errors are logged in
// full with a reference, and the client sees only the reference: internal
// details stay on the server.
func (m mapper) classify(method string, err error) outcome {
	if row, ok := lookup(err); ok {
		o := outcome{code: row.code, reason: row.reason, msg: row.msg}
		var fe *vault.FieldError
		var ge *fieldError
		switch {
		case errors.As(err, &ge):
			o.msg, o.field = ge.Error(), ge.field
		case errors.As(err, &fe):
			o.msg, o.field = fe.Error(), fe.Field
		case row.msg == "":
			o.msg = err.Error()
		}
		return o
	}
	if s, ok := foreignStatus(err); ok {
		// Only grpc-go's own (a failed Send: the stream is gone and the
		// caller sees nothing of it); everything of ours goes through the
		// table. It is passed on as it is, without a reason of ours.
		return outcome{code: s.Code(), msg: s.Message()}
	}
	ref := errorRef()
	// Error texts from our packages never contain values, tokens or keys
	// (a rule every package follows), so the full error can be logged.
	m.log.Error("internal error", "method", method, "ref", ref, "err", err)
	return internalError(ref)
}

func internalError(ref string) outcome {
	return outcome{codes.Internal, errinfo.Internal, "internal error (ref " + ref + ")", ""}
}

// toStatus turns a call-level error into a gRPC status error carrying an
// ErrorInfo (the reason) and, for field errors, a BadRequest naming the
// field, so clients need not parse messages.
func (m mapper) toStatus(method string, err error) error {
	if err == nil {
		return nil
	}
	return m.classify(method, err).status()
}

// itemStatus is the status of one item of a batch (the same table; no
// BadRequest: the item's position says which one).
func (m mapper) itemStatus(method string, err error) *pb.ItemStatus {
	if err == nil {
		return &pb.ItemStatus{Code: int32(codes.OK)}
	}
	o := m.classify(method, err)
	return &pb.ItemStatus{Code: int32(o.code), Message: o.msg, Reason: o.reason}
}

// status is the one place status errors are made.
func (o outcome) status() error {
	st := status.New(o.code, o.msg)
	if o.reason == "" {
		return st.Err()
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: o.reason, Domain: errinfo.Domain}}
	if o.field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: o.field, Description: o.msg}}})
	}
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		st = withDetails
	}
	return st.Err()
}

// outcomeCode is the code of an item's error, for its audit entry (the
// table without logging: the handler's itemStatus logged it already).
func outcomeCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if row, ok := lookup(err); ok {
		return row.code
	}
	if s, ok := foreignStatus(err); ok {
		return s.Code()
	}
	return codes.Internal
}

// lookup returns the first row of the table that err matches.
func lookup(err error) (codeRow, bool) {
	for _, row := range codeTable {
		if errors.Is(err, row.err) {
			return row, true
		}
	}
	return codeRow{}, false
}

// foreignStatus returns the status of an error grpc-go made.
func foreignStatus(err error) (*status.Status, bool) {
	s, ok := status.FromError(err)
	return s, ok && s.Code() != codes.Unknown
}

func errorRef() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
