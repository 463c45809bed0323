package grpcserver

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/backup"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// wire is what a client learns from a status error: its code, message and
// details, and the Go client's typed error.
type wire struct {
	code          codes.Code
	msg           string
	reason        string
	domain        string
	field         string
	hasErrorInfo  bool
	clientErr     *client.Error
	clientIsMatch func(error) bool
}

func onTheWire(t *testing.T, err error) wire {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%v is not a status error", err)
	}
	w := wire{code: st.Code(), msg: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			w.hasErrorInfo, w.reason, w.domain = true, d.GetReason(), d.GetDomain()
		case *errdetails.BadRequest:
			w.field = d.GetFieldViolations()[0].GetField()
		}
	}
	ce := client.AsError(err)
	if !errors.As(ce, &w.clientErr) {
		t.Fatalf("client.AsError(%v) = %T, not a *client.Error", err, ce)
	}
	w.clientIsMatch = func(target error) bool { return errors.Is(ce, target) }
	return w
}

// TestErrorTable walks every row of the table: each sentinel, wrapped as
// callers wrap it, becomes a status with the row's code, an ErrorInfo with
// the row's reason (and, when a field is at fault, a BadRequest naming
// it), which the Go client maps to the typed error written out below (by
// hand: not derived from the table under test).
func TestErrorTable(t *testing.T) {
	want := map[error]struct {
		code   codes.Code
		reason string
		typed  error
	}{
		vault.ErrInvalidArgument:    {codes.InvalidArgument, "INVALID_ARGUMENT", client.ErrInvalidArgument},
		vault.ErrNotFound:           {codes.NotFound, "NOT_FOUND", client.ErrNotFound},
		vault.ErrErased:             {codes.FailedPrecondition, "SUBJECT_ERASED", client.ErrErased},
		vault.ErrHeld:               {codes.FailedPrecondition, "HELD_AFTER_ERASURE", client.ErrHeld},
		vault.ErrFailedPrecondition: {codes.FailedPrecondition, "FAILED_PRECONDITION", client.ErrFailedPrecondition},
		vault.ErrKEKBusy:            {codes.FailedPrecondition, "FAILED_PRECONDITION", client.ErrFailedPrecondition},
		vault.ErrNoConsent:          {codes.FailedPrecondition, "CONSENT_REQUIRED", client.ErrConsentRequired},
		vault.ErrExhausted:          {codes.ResourceExhausted, "TOKEN_SPACE_EXHAUSTED", client.ErrExhausted},
		vault.ErrStorageFull:        {codes.ResourceExhausted, "STORAGE_FULL", client.ErrStorageFull},
		vault.ErrVolatileFull:       {codes.ResourceExhausted, "VOLATILE_CAPACITY_EXHAUSTED", client.ErrVolatileFull},
		vault.ErrPermissionDenied:   {codes.PermissionDenied, "PERMISSION_DENIED", client.ErrPermissionDenied},
		kek.ErrUnavailable:          {codes.Unavailable, "KEK_UNAVAILABLE", client.ErrUnavailable},
		vault.ErrStoreUnavailable:   {codes.Unavailable, "STORE_UNAVAILABLE", client.ErrUnavailable},
		auth.ErrUnauthenticated:     {codes.Unauthenticated, "UNAUTHENTICATED", client.ErrUnauthenticated},
		auth.ErrPermissionDenied:    {codes.PermissionDenied, "PERMISSION_DENIED", client.ErrPermissionDenied},
		errUnknownMethod:            {codes.PermissionDenied, "PERMISSION_DENIED", client.ErrPermissionDenied},
		ErrRateLimited:              {codes.ResourceExhausted, "RATE_LIMITED", client.ErrRateLimited},
		errAuditUnavailable:         {codes.Unavailable, "AUDIT_UNAVAILABLE", client.ErrUnavailable},
		errNotConfigured:            {codes.FailedPrecondition, "FAILED_PRECONDITION", client.ErrFailedPrecondition},
		errUnsupported:              {codes.Unimplemented, "UNIMPLEMENTED", client.ErrUnimplemented},
		context.DeadlineExceeded:    {codes.DeadlineExceeded, "DEADLINE_EXCEEDED", context.DeadlineExceeded},
		context.Canceled:            {codes.Canceled, "CANCELED", context.Canceled},
	}
	// Forwarded reveals of volatile tokens (peer.go); a row of its own
	// so that the literal above keeps its alignment.
	want[vault.ErrVolatileHolderUnavailable] = struct {
		code   codes.Code
		reason string
		typed  error
	}{codes.Unavailable, "VOLATILE_HOLDER_UNAVAILABLE", client.ErrVolatileHolderUnavailable}
	m := mapper{slog.New(slog.NewTextHandler(io.Discard, nil))}
	seen := map[error]bool{}
	for _, row := range codeTable {
		seen[row.err] = true
		w, ok := want[row.err]
		if !ok {
			t.Errorf("table row %q (%v) has no expectation in this test", row.err, row.code)
			continue
		}
		t.Run(row.reason+"/"+row.err.Error(), func(t *testing.T) {
			wrapped := fmt.Errorf("doing something: %w", row.err)
			fieldErr := error(&fieldError{"fields[2].kind", wrapped})
			if errors.Is(row.err, vault.ErrInvalidArgument) || errors.Is(row.err, vault.ErrNotFound) ||
				errors.Is(row.err, vault.ErrFailedPrecondition) || errors.Is(row.err, vault.ErrExhausted) ||
				errors.Is(row.err, vault.ErrPermissionDenied) {
				// The vault names its fields itself.
				fieldErr = &vault.FieldError{Field: "fields[2].kind", Reason: "what is wrong", Err: row.err}
			}
			for _, tc := range []struct {
				name  string
				err   error
				field string
			}{{"no field", wrapped, ""}, {"field", fieldErr, "fields[2].kind"}} {
				got := onTheWire(t, m.toStatus("Test", tc.err))
				if got.code != w.code || !got.hasErrorInfo || got.reason != w.reason || got.domain != "tokenvault" || got.field != tc.field {
					t.Errorf("%s: code %v reason %q domain %q field %q; want %v %q tokenvault %q",
						tc.name, got.code, got.reason, got.domain, got.field, w.code, w.reason, tc.field)
				}
				if ce := got.clientErr; ce.Code != w.code || ce.Reason != w.reason || ce.Field != tc.field || !got.clientIsMatch(w.typed) {
					t.Errorf("%s: client error %+v does not match %v", tc.name, ce, w.typed)
				}
				if tc.field != "" && !strings.HasPrefix(got.msg, tc.field+": ") {
					t.Errorf("%s: message %q does not start with the field", tc.name, got.msg)
				}
				// Per item, the same code and reason.
				if is := m.itemStatus("Test", tc.err); codes.Code(is.GetCode()) != w.code || is.GetReason() != w.reason {
					t.Errorf("%s: item status %v", tc.name, is)
				}
				if c := outcomeCode(tc.err); c != w.code {
					t.Errorf("%s: audited outcome %v, want %v", tc.name, c, w.code)
				}
			}
		})
	}
	for err := range want {
		if !seen[err] {
			t.Errorf("%v is expected but not in the table", err)
		}
	}
	// Errors matching no row are Internal, with a reference only.
	got := onTheWire(t, m.toStatus("Test", errors.New("disk on fire")))
	if got.code != codes.Internal || got.reason != "INTERNAL" || !got.clientIsMatch(client.ErrInternal) || strings.Contains(got.msg, "fire") {
		t.Errorf("unknown error: %+v", got)
	}
}

// TestHandlerRefusals: what the rights and admin handlers refuse on their
// own (a vault without the keys a call needs, a store without backups,
// bad recipients) goes through the table too.
func TestHandlerRefusals(t *testing.T) {
	s := newTestServer(t)
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, signing, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Over a real loopback stream: the handler needs the stream's context.
	backupErr := func(b *BackupAdmin, req *pb.BackupRequest) error {
		st, err := backupClient(t, b).Backup(context.Background(), req)
		if err == nil {
			_, err = st.Recv()
		}
		return err
	}
	ledgerErr := func(b *BackupAdmin) error {
		st, err := backupClient(t, b).ExportErasureLedger(context.Background(), &pb.ExportErasureLedgerRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		return err
	}
	noStore := NewBackupAdmin(s.v, backup.NewService(nil, s.v, backup.Keys{Signing: signing}), s.log)
	noKeys := NewBackupAdmin(s.v, backup.NewService(store, s.v, backup.Keys{}), s.log)
	signed := NewBackupAdmin(s.v, backup.NewService(store, s.v, backup.Keys{Signing: signing}), s.log)
	cases := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		field  string
		typed  error
		says   string
	}{
		{"receipt key of a vault that signs none", func() error {
			_, err := s.GetReceiptPublicKey(context.Background(), &pb.GetReceiptPublicKeyRequest{})
			return err
		}, codes.FailedPrecondition, "FAILED_PRECONDITION", "", client.ErrFailedPrecondition, "does not sign erasure receipts"},
		{"backup of a store without backups", func() error { return backupErr(noStore, &pb.BackupRequest{Recipients: []string{"age1x"}}) },
			codes.Unimplemented, "UNIMPLEMENTED", "", client.ErrUnimplemented, "does not support backups"},
		{"backup without a signing key", func() error { return backupErr(noKeys, &pb.BackupRequest{Recipients: []string{"age1x"}}) },
			codes.FailedPrecondition, "FAILED_PRECONDITION", "", client.ErrFailedPrecondition, "no signing key"},
		{"backup without recipients", func() error { return backupErr(signed, &pb.BackupRequest{}) },
			codes.InvalidArgument, "INVALID_ARGUMENT", "recipients", client.ErrInvalidArgument, "recipients: at least one"},
		{"backup to a bad recipient", func() error { return backupErr(signed, &pb.BackupRequest{Recipients: []string{"age1x"}}) },
			codes.InvalidArgument, "INVALID_ARGUMENT", "recipients[0]", client.ErrInvalidArgument, "recipients[0]: not an age public key"},
		{"ledger without a ledger key", func() error { return ledgerErr(noKeys) },
			codes.FailedPrecondition, "FAILED_PRECONDITION", "", client.ErrFailedPrecondition, "keeps no erasure ledger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := onTheWire(t, tc.call())
			if got.code != tc.code || got.reason != tc.reason || got.field != tc.field || !got.clientIsMatch(tc.typed) || !strings.Contains(got.msg, tc.says) {
				t.Fatalf("got %+v, want %v %s %q %v %q", got, tc.code, tc.reason, tc.field, tc.typed, tc.says)
			}
		})
	}
}

// TestPanicStatus: a panic in a handler is answered Internal through the
// same status builder (a reason, a reference, no panic value).
func TestPanicStatus(t *testing.T) {
	s := newTestServer(t)
	_, err := s.recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"},
		func(context.Context, any) (any, error) { panic("the value 4111111111111111") })
	got := onTheWire(t, err)
	if got.code != codes.Internal || got.reason != "INTERNAL" || !strings.HasPrefix(got.msg, "internal error (ref ") ||
		strings.Contains(got.msg, "4111") || !got.clientIsMatch(client.ErrInternal) {
		t.Fatalf("panic answered %+v", got)
	}
}
