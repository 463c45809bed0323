package grpcserver

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
)

// fuzzHolds is the hold class of the test server (FuzzRequests).
var fuzzHolds = map[string]vault.HoldClass{"tax": {Years: 7, Purposes: []string{"legal"}}}

// checkHolds is FuzzRequests' check of a Tokenize request's hold fields:
// an unknown class or two classes in one call are INVALID_ARGUMENT (the
// field named by TestHoldFieldErrors); a call under the known class that succeeded survives the
// subject's erasure, revealed for the hold's purpose only.
func checkHolds(t *testing.T, s *Server, tr *pb.TokenizeRequest, err error) {
	t.Helper()
	if len(tr.Fields) == 0 {
		return
	}
	first := tr.Fields[0].GetOptions().GetHold()
	for i, fl := range tr.Fields {
		h := fl.GetOptions().GetHold()
		if _, ok := fuzzHolds[h]; (h != "" && !ok) || h != first {
			// Never stored; which field is named depends on what else
			// is wrong (the subject id and kinds are checked first).
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("field %d under hold class %q (first %q): %v", i, h, first, err)
			}
			return
		}
	}
	if err != nil || first == "" {
		return
	}
	ctx := context.Background()
	resp, _ := s.Tokenize(ctx, tr) // the same tokens again, or new random ones
	if _, err := s.EraseSubject(ctx, &pb.EraseSubjectRequest{SubjectId: tr.SubjectId}); err != nil {
		t.Fatalf("erasing a subject with held data: %v", err)
	}
	for _, purpose := range []string{"legal", "fuzz"} {
		det, err := s.Detokenize(ctx, &pb.DetokenizeRequest{Tokens: resp.GetTokens(), Purpose: purpose})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range det.GetResults() {
			if tr.Fields[i].GetOptions().GetTtl() != nil {
				continue // may have expired
			}
			switch c := codes.Code(r.Status.Code); {
			case purpose == "legal" && c != codes.OK:
				t.Fatalf("held field %d for its hold's purpose: %v", i, r.Status)
			case purpose != "legal" && (c != codes.FailedPrecondition || r.Status.Reason != "HELD_AFTER_ERASURE"):
				t.Fatalf("held field %d for another purpose: %v", i, r.Status)
			}
		}
	}
}

// TestHoldFieldErrors: a bad hold names its field.
func TestHoldFieldErrors(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	pan := func(hold string) *pb.Field {
		return &pb.Field{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111", Options: &pb.TokenizeOptions{Hold: hold}}
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"unknown class", func() error {
			_, err := s.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{pan("nope")}})
			return err
		}, "fields[0].options.hold"},
		{"two classes", func() error {
			_, err := s.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{pan("tax"), pan("")}})
			return err
		}, "fields[1].options.hold"},
		{"encrypt", func() error {
			_, err := s.Encrypt(ctx, &pb.EncryptRequest{SubjectId: "s", Items: []*pb.EncryptItem{{Hold: "tax"}, {Hold: "Tax"}}})
			return err
		}, "items[1].hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if w := onTheWire(t, err); w.code != codes.InvalidArgument || w.field != tc.field {
				t.Fatalf("err = %v (field %q), want INVALID_ARGUMENT naming %s", err, w.field, tc.field)
			}
		})
	}
}
