package grpcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/vault"
)

// codeTable is the one mapping from domain errors to gRPC codes. The first
// sentinel that matches wins. Errors matching none are Internal.
var codeTable = []struct {
	err  error
	code codes.Code
	msg  string // sent when the error is not a *vault.FieldError
}{
	{vault.ErrInvalidArgument, codes.InvalidArgument, "invalid argument"},
	{vault.ErrNotFound, codes.NotFound, "not found"},
	{vault.ErrErased, codes.FailedPrecondition, "the subject has been erased"},
	{vault.ErrFailedPrecondition, codes.FailedPrecondition, "failed precondition"},
	{vault.ErrExhausted, codes.ResourceExhausted, "token space exhausted"},
	{vault.ErrPermissionDenied, codes.PermissionDenied, "permission denied"},
	{kek.ErrUnavailable, codes.Unavailable, "the key-encryption key provider is unavailable; retry later"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded"},
	{context.Canceled, codes.Canceled, "canceled"},
}

// classify maps err to a code and the message safe to send. Internal
// errors are logged in full with a reference the client gets, and the
// client sees only the reference: internal details stay on the server.
func classify(log *slog.Logger, method string, err error) (codes.Code, string) {
	var fe *vault.FieldError
	for _, row := range codeTable {
		if errors.Is(err, row.err) {
			if errors.As(err, &fe) {
				return row.code, fe.Error()
			}
			return row.code, row.msg
		}
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code(), s.Message()
	}
	ref := errorRef()
	// Error texts from our packages never contain values, tokens or keys
	// (a rule every package follows), so the full error can be logged.
	log.Error("internal error", "method", method, "ref", ref, "err", err)
	return codes.Internal, "internal error (ref " + ref + ")"
}

// toStatus turns a call-level error into a gRPC status error.
func (s *Server) toStatus(method string, err error) error {
	if err == nil {
		return nil
	}
	code, msg := classify(s.log, method, err)
	return status.Error(code, msg)
}

func errorRef() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
