package grpcserver

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// Erasure notices (vault/erasures.go): a server stream of events and a
// unary acknowledgement. The stream sends events as fast as the client
// reads them; what it has sent is not acknowledged until AckErasures, so
// a broken stream loses nothing.

func (s *Server) WatchErasures(req *pb.WatchErasuresRequest, stream pb.TokenVault_WatchErasuresServer) error {
	err := s.v.WatchErasures(stream.Context(), req.GetConsumer(), func(ev vault.ErasureEvent) error {
		return stream.Send(&pb.WatchErasuresResponse{Sequence: ev.Seq, SubjectId: ev.Subject,
			ErasedAt: timestamppb.New(ev.ErasedAt), BlobKeyId: ev.KeyID[:], SignedReceipt: ev.Receipt})
	})
	return s.toStatus("WatchErasures", err)
}

func (s *Server) AckErasures(ctx context.Context, req *pb.AckErasuresRequest) (*pb.AckErasuresResponse, error) {
	if err := s.v.AckErasures(ctx, req.GetConsumer(), req.GetSequence()); err != nil {
		return nil, s.toStatus("AckErasures", err)
	}
	return &pb.AckErasuresResponse{}, nil
}
