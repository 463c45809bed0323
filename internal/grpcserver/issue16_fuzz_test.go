package grpcserver

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// canceledStream is a WatchErasures stream whose call has already ended:
// the handler validates the request, then stops.
type canceledStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent int
}

func (s *canceledStream) Context() context.Context             { return s.ctx }
func (s *canceledStream) Send(*pb.WatchErasuresResponse) error { s.sent++; return nil }

// fuzzIssue16 is FuzzRequests' part for consent and erasure notices: the
// requests of GrantConsent, WithdrawConsent, WatchErasures and
// AckErasures never panic nor fail Internal; a grant followed by a reveal
// of the subject for its purpose succeeds.
func fuzzIssue16(t *testing.T, s *Server, b []byte, check func(string, error)) {
	ctx := context.Background()
	var gr pb.GrantConsentRequest
	if proto.Unmarshal(b, &gr) == nil {
		_, err := s.GrantConsent(ctx, &gr)
		check("GrantConsent", err)
		if err == nil {
			tok, err := s.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: gr.SubjectId, Fields: []*pb.Field{{Kind: pb.Kind_KIND_NAME, Value: "x"}}})
			check("Tokenize", err)
			if err == nil {
				det, err := s.Detokenize(ctx, &pb.DetokenizeRequest{Tokens: tok.Tokens, Purpose: gr.Purpose})
				check("Detokenize", err)
				if c := det.GetResults()[0].GetStatus().GetCode(); c != 0 {
					t.Fatalf("reveal after a grant: %v", det.GetResults()[0].GetStatus())
				}
			}
		}
	}
	var wr pb.WithdrawConsentRequest
	if proto.Unmarshal(b, &wr) == nil {
		_, err := s.WithdrawConsent(ctx, &wr)
		check("WithdrawConsent", err)
	}
	var ack pb.AckErasuresRequest
	if proto.Unmarshal(b, &ack) == nil {
		_, err := s.AckErasures(ctx, &ack)
		check("AckErasures", err)
	}
	var watch pb.WatchErasuresRequest
	if proto.Unmarshal(b, &watch) == nil {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		check("WatchErasures", s.WatchErasures(&watch, &canceledStream{ctx: cctx}))
	}
}
