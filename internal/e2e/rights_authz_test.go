package e2e

import (
	"bytes"
	"os"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/audit"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestRightsUnderPolicy: the data-subject-rights RPCs go through the same
// guard as the rest: export is a reveal (a purpose the role has, audited
// before the first value is streamed), restrict/rectify/backup need their
// own operations, and the receipt public key is public.
func TestRightsUnderPolicy(t *testing.T) {
	s := newSecureEnv(t)
	s.start(t)
	c := ctx(t)
	toks, err := s.as(t, "setup").Tokenize(c, "dsar-subject", client.Field{Kind: "email", Value: "dsar@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	privacy := s.as(t, "privacy-ops")

	ex, err := privacy.ExportSubject(c, "dsar-subject", "dsar")
	if err != nil || len(ex.Tokens) != 1 || ex.Tokens[0].Value != "dsar@example.com" {
		t.Fatalf("export by privacy-ops: %+v %v", ex, err)
	}
	for _, tc := range []struct {
		name, who, purpose string
		code               codes.Code
	}{
		{"no purpose", "privacy-ops", "", codes.InvalidArgument},
		{"purpose the role lacks", "privacy-ops", "marketing", codes.PermissionDenied},
		{"role without export", "payments", "dsar", codes.PermissionDenied},
		{"not in the policy", "nobody", "dsar", codes.PermissionDenied},
	} {
		t.Run("export/"+tc.name, func(t *testing.T) {
			_, err := s.as(t, tc.who).ExportSubject(c, "dsar-subject", tc.purpose)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
		})
	}
	if _, err := privacy.Restrict(c, "dsar-subject"); err != nil {
		t.Fatalf("restrict by privacy-ops: %v", err)
	}
	if _, err := s.as(t, "orders").Restrict(c, "dsar-subject"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("restrict by orders: %v", err)
	}
	if err := privacy.Unrestrict(c, "dsar-subject"); err != nil {
		t.Fatalf("unrestrict by privacy-ops: %v", err)
	}
	if _, err := s.as(t, "orders").Rectify(c, toks[0], "other@example.com"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("rectify by orders: %v", err)
	}
	stream, err := s.as(t, "orders").BackupAdmin().Backup(c, &pb.BackupRequest{Recipients: []string{"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"}})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("backup by orders: %v", err)
	}
	// Anyone may fetch the receipt public key (to verify receipts).
	if _, err := dialTLS(t, s.app.Addr(), s.pki.CAFile, "", "").Raw().GetReceiptPublicKey(c, &pb.GetReceiptPublicKeyRequest{}); err != nil {
		t.Fatalf("receipt public key without credentials: %v", err)
	}

	s.app.Stop()
	logData, err := os.ReadFile(s.app.AuditLogPath())
	if err != nil {
		t.Fatal(err)
	}
	var started, done bool
	for _, ln := range bytes.SplitAfter(bytes.TrimSuffix(logData, []byte("\n")), []byte("\n")) {
		e, err := audit.ParseLine(ln)
		if err != nil {
			t.Fatal(err)
		}
		if e.Op == "export" && e.SubjectHash == subjectHash(t, s.keysDir, "dsar-subject") && e.Purpose == "dsar" {
			started = started || e.Outcome == "STARTED"
			done = done || e.Outcome == "OK"
		}
	}
	if !started || !done {
		t.Fatalf("export not audited before and after (started=%v done=%v):\n%s", started, done, logData)
	}
	if bytes.Contains(logData, []byte("dsar@example.com")) {
		t.Fatal("the audit log holds an exported value")
	}
}
