package grpcserver

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Legal holds at erasure (vault/holds.go).

func heldToPB(held []receipt.Held) []*pb.HeldData {
	out := make([]*pb.HeldData, len(held))
	for i, h := range held {
		out[i] = &pb.HeldData{Class: h.Class, Until: timestamppb.New(h.Until)}
	}
	return out
}

func exportedHoldsToPB(holds []vault.ExportedHold) []*pb.ExportedHold {
	out := make([]*pb.ExportedHold, len(holds))
	for i, h := range holds {
		out[i] = &pb.ExportedHold{Class: h.Class, BlobKeyId: h.KeyID[:], KeyCreated: timestamppb.New(h.KeyCreated),
			ErasedAt: tsOrNil(h.ErasedAt), HeldUntil: tsOrNil(h.Until)}
	}
	return out
}

func (s *Server) GetHoldReceipts(ctx context.Context, req *pb.GetHoldReceiptsRequest) (*pb.GetHoldReceiptsResponse, error) {
	rs, files, err := s.v.HoldReceipts(ctx, req.GetSubjectId())
	if err != nil {
		return nil, s.toStatus("GetHoldReceipts", err)
	}
	out := &pb.GetHoldReceiptsResponse{Receipts: make([]*pb.HoldReceipt, len(rs))}
	for i, r := range rs {
		out.Receipts[i] = &pb.HoldReceipt{Class: r.HoldClass, ShreddedAt: timestamppb.New(r.ErasedAt),
			SubjectErasedAt: timestamppb.New(r.SubjectErasedAt), RecordsErased: r.Records, LookupsErased: r.Lookups,
			BackupsUndecryptableBy: tsOrNil(r.BackupsUndecryptableBy), SigningKeyId: r.KeyID, SignedReceipt: files[i]}
	}
	return out, nil
}
