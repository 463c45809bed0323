package grpcserver

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"hash"
	"io"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/backup"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Data-subject rights RPCs of TokenVault, and the BackupAdmin service.

func addReceiptDetails(r *pb.ErasureReceipt, v vault.Receipt) {
	if !v.BackupsUndecryptableBy.IsZero() {
		r.BackupsUndecryptableBy = timestamppb.New(v.BackupsUndecryptableBy)
	}
	if v.Signed != nil {
		if p, err := receipt.Parse(v.Signed); err == nil {
			r.SigningKeyId = p.KeyID
		}
	}
}

func tsOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func (s *Server) ExportSubject(req *pb.ExportSubjectRequest, stream pb.TokenVault_ExportSubjectServer) error {
	err := s.v.ExportSubject(stream.Context(), req.GetSubjectId(), func(h vault.ExportHeader, recs []vault.ExportedRecord) error {
		msg := &pb.ExportSubjectResponse{SubjectId: h.Subject, BlobKeyId: h.KeyID[:],
			KeyCreated: timestamppb.New(h.KeyCreated), RestrictedSince: tsOrNil(h.Restricted),
			Tokens: make([]*pb.ExportedToken, len(recs))}
		for i, r := range recs {
			msg.Tokens[i] = &pb.ExportedToken{Token: r.Token, Kind: kindToPB(r.Kind), Value: r.Value,
				Created: timestamppb.New(r.Created), Expires: tsOrNil(r.Expires), Deterministic: r.Deterministic}
		}
		return stream.Send(msg)
	})
	return s.toStatus("ExportSubject", err)
}

func (s *Server) RectifyToken(ctx context.Context, req *pb.RectifyTokenRequest) (*pb.RectifyTokenResponse, error) {
	r, err := s.v.Rectify(ctx, req.GetToken(), req.GetValue())
	if err != nil {
		return nil, s.toStatus("RectifyToken", err)
	}
	recordRectified(ctx, req.GetToken(), r)
	return &pb.RectifyTokenResponse{Deterministic: r.Deterministic}, nil
}

func (s *Server) RestrictSubject(ctx context.Context, req *pb.RestrictSubjectRequest) (*pb.RestrictSubjectResponse, error) {
	since, err := s.v.RestrictSubject(ctx, req.GetSubjectId())
	if err != nil {
		return nil, s.toStatus("RestrictSubject", err)
	}
	return &pb.RestrictSubjectResponse{RestrictedSince: timestamppb.New(since)}, nil
}

func (s *Server) UnrestrictSubject(ctx context.Context, req *pb.UnrestrictSubjectRequest) (*pb.UnrestrictSubjectResponse, error) {
	if err := s.v.UnrestrictSubject(ctx, req.GetSubjectId()); err != nil {
		return nil, s.toStatus("UnrestrictSubject", err)
	}
	return &pb.UnrestrictSubjectResponse{}, nil
}

func (s *Server) GetReceiptPublicKey(context.Context, *pb.GetReceiptPublicKeyRequest) (*pb.GetReceiptPublicKeyResponse, error) {
	pub := s.v.ReceiptPublicKey()
	if pub == nil {
		return nil, s.toStatus("GetReceiptPublicKey", notConfigured("this vault does not sign erasure receipts"))
	}
	return &pb.GetReceiptPublicKeyResponse{PublicKeyPem: string(receipt.MarshalPublicKey(pub)), KeyId: receipt.KeyID(pub)}, nil
}

// BackupSource is what the backup service needs from the store (the
// badger store has it).
type BackupSource interface {
	WriteBackup(w io.Writer, since uint64) (next uint64, err error)
	BackupSizeEstimate() int64
}

// BackupAdmin implements tokenvault.v1.BackupAdmin.
type BackupAdmin struct {
	pb.UnimplementedBackupAdminServer
	mapper
	v    *vault.Vault
	src  BackupSource
	keys BackupKeys
}

// BackupKeys authenticate what BackupAdmin hands out, so that a restore
// can tell the vault's files from forgeries.
type BackupKeys struct {
	// Signing signs backups (the vault's receipt signing key; the
	// signatures are domain-separated from receipts, see
	// backup.BackupSignedBytes). Without it Backup answers
	// FailedPrecondition.
	Signing ed25519.PrivateKey
	// Ledger MACs the exported erasure ledger (the vault's ledger key).
	// Without it the ledger export answers FailedPrecondition.
	Ledger *aead.Key
}

// NewBackupAdmin returns the backup service over src (nil: Backup answers
// Unimplemented, the ledger export still works).
func NewBackupAdmin(v *vault.Vault, src BackupSource, keys BackupKeys, log *slog.Logger) *BackupAdmin {
	return &BackupAdmin{mapper: mapper{orDefault(log)}, v: v, src: src, keys: keys}
}

// chunkSize bounds one streamed chunk of a backup.
const chunkSize = 256 << 10

// chunker sends what is written to it as BackupResponse chunks, hashing
// them for the signature.
type chunker struct {
	stream pb.BackupAdmin_BackupServer
	buf    []byte
	read   *int64
	total  int64
	sum    hash.Hash
}

func (c *chunker) Write(p []byte) (int, error) {
	c.sum.Write(p)
	c.buf = append(c.buf, p...)
	for len(c.buf) >= chunkSize {
		if err := c.send(c.buf[:chunkSize]); err != nil {
			return 0, err
		}
		c.buf = c.buf[chunkSize:]
	}
	return len(p), nil
}

func (c *chunker) send(b []byte) error {
	return c.stream.Send(&pb.BackupResponse{Chunk: b, ReadBytes: *c.read, TotalBytes: max(c.total, *c.read)})
}

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = nil
	return err
}

// counter counts the payload bytes the store produces (progress).
type counter struct {
	w io.Writer
	n *int64
}

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

func (b *BackupAdmin) Backup(req *pb.BackupRequest, stream pb.BackupAdmin_BackupServer) error {
	if b.src == nil {
		return b.toStatus("Backup", unsupported("this store does not support backups"))
	}
	if len(b.keys.Signing) != ed25519.PrivateKeySize {
		// An unsigned backup is one a restore refuses: better no backup
		// than one that looks fine until the day it is needed.
		return b.toStatus("Backup", notConfigured("this vault has no signing key to sign backups with"))
	}
	recips, err := backup.ParseRecipients(req.GetRecipients())
	if err != nil {
		// Its errors start with the field ("recipients[1]: …").
		field, reason, ok := strings.Cut(err.Error(), ": ")
		if !ok {
			field, reason = "recipients", err.Error()
		}
		return b.toStatus("Backup", &vault.FieldError{Field: field, Reason: reason, Err: vault.ErrInvalidArgument})
	}
	var read int64
	ch := &chunker{stream: stream, read: &read, total: b.src.BackupSizeEstimate(), sum: sha256.New()}
	// Only age ciphertext is sent: the payload holds subject ids (in key
	// names) and wrapped keys, which must not cross the wire in the clear.
	enc, err := backup.Encrypt(ch, recips)
	if err != nil {
		return b.toStatus("Backup", err)
	}
	next, err := b.src.WriteBackup(counter{enc, &read}, req.GetSince())
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = ch.flush()
	}
	if err != nil {
		if stream.Context().Err() != nil {
			return b.toStatus("Backup", stream.Context().Err())
		}
		return b.toStatus("Backup", err)
	}
	// The signature covers exactly the ciphertext sent: the client writes
	// it after the header unchanged, and the restore hashes it again.
	h := backup.SignBackup(b.keys.Signing, req.GetSince(), next, ch.sum.Sum(nil))
	return stream.Send(&pb.BackupResponse{Done: true, NextSince: next, ReadBytes: read, TotalBytes: max(ch.total, read),
		Signature: h.Signature, SigningKeyId: h.KeyID})
}

func (b *BackupAdmin) ExportErasureLedger(_ *pb.ExportErasureLedgerRequest, stream pb.BackupAdmin_ExportErasureLedgerServer) error {
	if b.keys.Ledger == nil {
		return b.toStatus("ExportErasureLedger", notConfigured("this vault keeps no erasure ledger"))
	}
	kid, err := vault.LedgerKeyID(b.keys.Ledger)
	if err != nil {
		return b.toStatus("ExportErasureLedger", err)
	}
	// The MAC covers exactly the entries sent, in the order sent.
	sum := backup.NewLedgerSum(kid)
	err = b.v.ScanLedger(stream.Context(), func(page []vault.LedgerEntry) error {
		msg := &pb.ExportErasureLedgerResponse{LedgerKeyId: kid, Entries: make([]*pb.LedgerEntry, len(page))}
		for i, e := range page {
			sum.Add(e)
			msg.Entries[i] = &pb.LedgerEntry{SubjectHash: e.Hash, ErasedAt: timestamppb.New(e.ErasedAt)}
		}
		return stream.Send(msg)
	})
	if err != nil {
		return b.toStatus("ExportErasureLedger", err)
	}
	mac, err := sum.MAC(b.keys.Ledger)
	if err != nil {
		return b.toStatus("ExportErasureLedger", err)
	}
	return b.toStatus("ExportErasureLedger", stream.Send(&pb.ExportErasureLedgerResponse{LedgerKeyId: kid, LedgerMac: mac}))
}
