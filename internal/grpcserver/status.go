package grpcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"regexp"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/vault"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail attached to
// every error status; its Reason is the machine-readable cause clients
// branch on (the client package maps it to typed errors).
const ErrorDomain = "tokenvault"

// codeTable is the one mapping from domain errors to gRPC codes and
// reasons. The first sentinel that matches wins. Errors matching none are
// Internal.
var codeTable = []struct {
	err    error
	code   codes.Code
	reason string
	msg    string // sent when the error is not a *vault.FieldError
}{
	{vault.ErrInvalidArgument, codes.InvalidArgument, "INVALID_ARGUMENT", "invalid argument"},
	{vault.ErrNotFound, codes.NotFound, "NOT_FOUND", "not found"},
	{vault.ErrErased, codes.FailedPrecondition, "SUBJECT_ERASED", "the subject has been erased"},
	{vault.ErrFailedPrecondition, codes.FailedPrecondition, "FAILED_PRECONDITION", "failed precondition"},
	{vault.ErrExhausted, codes.ResourceExhausted, "TOKEN_SPACE_EXHAUSTED", "token space exhausted"},
	{vault.ErrPermissionDenied, codes.PermissionDenied, "PERMISSION_DENIED", "permission denied"},
	{kek.ErrUnavailable, codes.Unavailable, "KEK_UNAVAILABLE", "the key-encryption key provider is unavailable; retry later"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "deadline exceeded"},
	{context.Canceled, codes.Canceled, "CANCELED", "canceled"},
}

// outcome is what the client is told about an error.
type outcome struct {
	code   codes.Code
	reason string
	msg    string
	field  string // the request field at fault, if known
}

// classify maps err to what is safe to send. Internal errors are logged in
// full with a reference, and the client sees only the reference: internal
// details stay on the server.
func classify(log *slog.Logger, method string, err error) outcome {
	var fe *vault.FieldError
	for _, row := range codeTable {
		if errors.Is(err, row.err) {
			if errors.As(err, &fe) {
				return outcome{row.code, row.reason, fe.Error(), fe.Field}
			}
			return outcome{row.code, row.reason, row.msg, ""}
		}
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return outcome{code: s.Code(), reason: s.Code().String(), msg: s.Message()}
	}
	ref := errorRef()
	// Error texts from our packages never contain values, tokens or keys
	// (a rule every package follows), so the full error can be logged.
	log.Error("internal error", "method", method, "ref", ref, "err", err)
	return outcome{codes.Internal, "INTERNAL", "internal error (ref " + ref + ")", ""}
}

// toStatus turns a call-level error into a gRPC status error carrying an
// ErrorInfo (the reason) and, for field errors, a BadRequest naming the
// field, so clients need not parse messages.
func (s *Server) toStatus(method string, err error) error {
	if err == nil {
		return nil
	}
	o := classify(s.log, method, err)
	st := status.New(o.code, o.msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: o.reason, Domain: ErrorDomain}}
	if o.field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: o.field, Description: o.msg}}})
	}
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		st = withDetails
	}
	return st.Err()
}

func errorRef() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Reasons of the guard's refusals (client/errors.go maps them).
const (
	ReasonUnauthenticated  = "UNAUTHENTICATED"
	ReasonPermissionDenied = "PERMISSION_DENIED"
	ReasonInvalidArgument  = "INVALID_ARGUMENT"
	ReasonRateLimited      = "RATE_LIMITED"
	ReasonRefused          = "REFUSED" // any other refusal
)

// refusalField matches the request field a refusal's message starts with
// ("fields[2].options.mode: …", "purpose: …").
var refusalField = regexp.MustCompile(`^((?:purpose|subject_id|fields|items|tokens)(?:\[\d+\])?(?:\.[a-z_]+)*): `)

// refusalStatus is the status of a call the guard refuses: the message,
// an ErrorInfo reason and, when the message names a field, a BadRequest.
func refusalStatus(code codes.Code, err error) error {
	msg := err.Error()
	reason := ReasonRefused
	switch {
	case errors.Is(err, ErrRateLimited):
		reason = ReasonRateLimited
	case code == codes.Unauthenticated:
		reason = ReasonUnauthenticated
	case code == codes.PermissionDenied:
		reason = ReasonPermissionDenied
	case code == codes.InvalidArgument:
		reason = ReasonInvalidArgument
	}
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}}
	if m := refusalField.FindStringSubmatch(msg); m != nil {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: m[1], Description: msg}}})
	}
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		st = withDetails
	}
	return st.Err()
}
