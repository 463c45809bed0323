package grpcserver

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Data-subject rights RPCs of TokenVault (the BackupAdmin service is in
// backup.go).

func addReceiptDetails(r *pb.ErasureReceipt, v receipt.Receipt) {
	if !v.BackupsUndecryptableBy.IsZero() {
		r.BackupsUndecryptableBy = timestamppb.New(v.BackupsUndecryptableBy)
	}
	r.SigningKeyId = v.KeyID // "" when the vault does not sign receipts
	r.Held = heldToPB(v.Held)
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
			Tokens: make([]*pb.ExportedToken, len(recs)), ConsentHistory: consentHistoryToPB(h.Consent),
			Holds: exportedHoldsToPB(h.Holds)}
		if h.KeyID == (vault.KeyID{}) { // erased: only held data is left
			msg.BlobKeyId, msg.KeyCreated = nil, nil
		}
		for i, r := range recs {
			msg.Tokens[i] = &pb.ExportedToken{Token: r.Token, Kind: kindToPB(r.Kind), Value: r.Value,
				Created: timestamppb.New(r.Created), Expires: tsOrNil(r.Expires), Deterministic: r.Deterministic, Hold: r.Hold}
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
