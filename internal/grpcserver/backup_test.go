package grpcserver

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// TestBackupAdminWithoutKeys: a vault that cannot sign backups or MAC the
// ledger refuses to hand them out unauthenticated (a restore would refuse
// them). Both checks come before the stream is touched.
func TestBackupAdminWithoutKeys(t *testing.T) {
	s := newTestServer(t)
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b := NewBackupAdmin(s.v, store, BackupKeys{}, s.log)
	if err := b.Backup(&pb.BackupRequest{Recipients: []string{"age1x"}}, nil); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Backup without a signing key = %v, want FailedPrecondition", err)
	}
	if err := b.ExportErasureLedger(&pb.ExportErasureLedgerRequest{}, nil); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ExportErasureLedger without a ledger key = %v, want FailedPrecondition", err)
	}
}
