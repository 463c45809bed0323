package grpcserver

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// Backups is the server side of backups, which internal/backup.Service
// implements (internal/app wires it in). It is declared here in plain
// types, so that this package links neither age nor any store: the
// handler relays ciphertext it cannot read and knows nothing of how a
// store is backed up.
type Backups interface {
	// Backup hands send the age ciphertext of a signed backup of
	// everything changed after since, in chunks with the payload bytes
	// read and the estimated total, and returns next and the signature
	// (with its key id) the client writes into the file header.
	Backup(ctx context.Context, recipients []string, since uint64, send func(chunk []byte, read, total int64) error) (next uint64, keyID string, sig []byte, err error)
	// ExportLedger hands send the erasure ledger page by page and returns
	// the ledger key id and the MAC over every entry sent.
	ExportLedger(ctx context.Context, send func(keyID string, page []vault.LedgerEntry) error) (keyID string, mac []byte, err error)
}

// BackupAdmin implements tokenvault.v1.BackupAdmin over Backups.
type BackupAdmin struct {
	pb.UnimplementedBackupAdminServer
	mapper
	backups Backups
}

// NewBackupAdmin returns the backup service.
func NewBackupAdmin(v *vault.Vault, backups Backups, log *slog.Logger) *BackupAdmin {
	return &BackupAdmin{mapper: mapper{orDefault(log)}, backups: backups}
}

func (b *BackupAdmin) Backup(req *pb.BackupRequest, stream pb.BackupAdmin_BackupServer) error {
	var read, total int64
	next, kid, sig, err := b.backups.Backup(stream.Context(), req.GetRecipients(), req.GetSince(), func(chunk []byte, r, t int64) error {
		read, total = r, t
		return stream.Send(&pb.BackupResponse{Chunk: chunk, ReadBytes: r, TotalBytes: t})
	})
	if errors.Is(err, errors.ErrUnsupported) {
		// The method exists, this vault's store lacks it.
		return b.toStatus("Backup", unsupported("this store does not support backups"))
	}
	if err != nil {
		return b.toStatus("Backup", err)
	}
	// The last chunk was sent after the whole payload was read: its
	// progress is the final one.
	return stream.Send(&pb.BackupResponse{Done: true, NextSince: next, ReadBytes: read, TotalBytes: total,
		Signature: sig, SigningKeyId: kid})
}

func (b *BackupAdmin) ExportErasureLedger(_ *pb.ExportErasureLedgerRequest, stream pb.BackupAdmin_ExportErasureLedgerServer) error {
	kid, mac, err := b.backups.ExportLedger(stream.Context(), func(kid string, page []vault.LedgerEntry) error {
		msg := &pb.ExportErasureLedgerResponse{LedgerKeyId: kid, Entries: make([]*pb.LedgerEntry, len(page))}
		for i, e := range page {
			msg.Entries[i] = &pb.LedgerEntry{SubjectHash: e.Hash, ErasedAt: timestamppb.New(e.ErasedAt)}
		}
		return stream.Send(msg)
	})
	if err != nil {
		return b.toStatus("ExportErasureLedger", err)
	}
	return b.toStatus("ExportErasureLedger", stream.Send(&pb.ExportErasureLedgerResponse{LedgerKeyId: kid, LedgerMac: mac}))
}
