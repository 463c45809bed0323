package e2e

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// TestRequestOver16MiB pins what the README and the proto say about the
// message limit: grpc-go itself refuses a request message over 16 MiB
// with RESOURCE_EXHAUSTED, before tokenvault decodes it, so with no field
// name and no ErrorInfo (not the INVALID_ARGUMENT of the other limits).
// Nothing is stored.
func TestRequestOver16MiB(t *testing.T) {
	a, _ := newEnv(t).start(t)
	tv := pb.NewTokenVaultClient(dialRaw(t, a.Addr()))
	big := strings.Repeat("x", 17<<20)
	_, err := tv.Tokenize(ctx(t), &pb.TokenizeRequest{SubjectId: "s", Fields: []*pb.Field{{Kind: pb.Kind_KIND_GENERIC, Value: big}}})
	s := status.Convert(err)
	if s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "larger than max") || len(s.Details()) != 0 {
		t.Fatalf("got %v %q %v; want RESOURCE_EXHAUSTED from grpc-go, without details", s.Code(), s.Message(), s.Details())
	}
}
