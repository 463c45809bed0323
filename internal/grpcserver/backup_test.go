package grpcserver

import (
	"context"
	"crypto/ed25519"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/internal/backup"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// backupClient serves b on a loopback listener and returns a client.
func backupClient(t *testing.T, b *BackupAdmin) pb.BackupAdminClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterBackupAdminServer(gs, b)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewBackupAdminClient(conn)
}

// TestBackupAdminWithoutKeys: a vault that cannot sign backups or MAC the
// ledger refuses to hand them out unauthenticated (a restore would refuse
// them), and a store that cannot be backed up says so. Every check comes
// before anything is sent: the first message is the error.
func TestBackupAdminWithoutKeys(t *testing.T) {
	s := newTestServer(t)
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	c := backupClient(t, NewBackupAdmin(s.v, backup.NewService(store, s.v, backup.Keys{}), s.log))
	stream, err := c.Backup(ctx, &pb.BackupRequest{Recipients: []string{"age1x"}})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Backup without a signing key = %v, want FailedPrecondition", err)
	}
	ledger, err := c.ExportErasureLedger(ctx, &pb.ExportErasureLedgerRequest{})
	if err == nil {
		_, err = ledger.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ExportErasureLedger without a ledger key = %v, want FailedPrecondition", err)
	}

	_, signing, _ := ed25519.GenerateKey(nil)
	c = backupClient(t, NewBackupAdmin(s.v, backup.NewService(nil, s.v, backup.Keys{Signing: signing}), s.log))
	stream, err = c.Backup(ctx, &pb.BackupRequest{Recipients: []string{"age1x"}})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Backup of a store without backups = %v, want Unimplemented", err)
	}
}
