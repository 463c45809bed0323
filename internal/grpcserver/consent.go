package grpcserver

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// Consent per purpose (vault/consent.go). The refusal of a reveal for
// want of consent is a per-item FAILED_PRECONDITION (CONSENT_REQUIRED),
// audited with the reveal's other items.

func consentToPB(r vault.ConsentRecord) *pb.ConsentRecord {
	return &pb.ConsentRecord{Purpose: r.Purpose, Granted: r.Granted, At: timestamppb.New(r.At), Source: r.Source}
}

func consentHistoryToPB(rs []vault.ConsentRecord) []*pb.ConsentRecord {
	out := make([]*pb.ConsentRecord, len(rs))
	for i, r := range rs {
		out[i] = consentToPB(r)
	}
	return out
}

func (s *Server) GrantConsent(ctx context.Context, req *pb.GrantConsentRequest) (*pb.GrantConsentResponse, error) {
	r, err := s.v.GrantConsent(ctx, req.GetSubjectId(), req.GetPurpose(), req.GetSource())
	if err != nil {
		return nil, s.toStatus("GrantConsent", err)
	}
	return &pb.GrantConsentResponse{Record: consentToPB(r)}, nil
}

func (s *Server) WithdrawConsent(ctx context.Context, req *pb.WithdrawConsentRequest) (*pb.WithdrawConsentResponse, error) {
	r, err := s.v.WithdrawConsent(ctx, req.GetSubjectId(), req.GetPurpose(), req.GetSource())
	if err != nil {
		return nil, s.toStatus("WithdrawConsent", err)
	}
	return &pb.WithdrawConsentResponse{Record: consentToPB(r)}, nil
}
