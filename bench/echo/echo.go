// Package echo is the no-op baseline server for tvbench: it serves the
// tokenvault.v1.TokenVault API with handlers that do no work at all — each
// reply echoes the request's items (a value comes back as its "token", a
// token as its "value", a plaintext as its "blob") — so the messages on the
// wire have the shapes and sizes of real ones.
//
// Measured with the same client settings as tokenvault, its throughput (E)
// is what gRPC, protobuf, the network and the load generator cost on the
// machines at hand; tokenvault's figures are reported as ratios to it.
//
// [WithDelay] makes it answer each call only after a fixed wait, still
// doing no work: with as many calls in flight, its throughput then falls
// to a server's that waits for an fsync per group, and its CPU per call
// shows what gRPC and the Go runtime alone cost at that throughput (fewer
// calls share each read, write and wake-up than when the echo runs flat
// out).
package echo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// MaxMessageBytes matches tokenvault's request limit, so a request the
// echo accepts is one tokenvault would accept too.
const MaxMessageBytes = 16 << 20

type server struct {
	pb.UnimplementedTokenVaultServer
}

var _ pb.TokenVaultServer = (*server)(nil)

// Register adds the echo TokenVault service to gs.
func Register(gs *grpc.Server) { pb.RegisterTokenVaultServer(gs, &server{}) }

// NewServer returns a *grpc.Server serving only the echo service, with
// tokenvault's message limit; opts (e.g. TLS credentials) are appended.
func NewServer(opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes)}, opts...)...)
	Register(gs)
	return gs
}

// WithDelay returns the server option that holds every unary call for d
// before its handler runs (or until the call's deadline or cancellation,
// then answered with the context's error). d must be positive: without a
// delay, pass no option, so the plain echo has no interceptor at all.
func WithDelay(d time.Duration) (grpc.ServerOption, error) {
	if d <= 0 {
		return nil, errors.New("echo: the delay must be positive")
	}
	return grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return h(ctx, req)
	}), nil
}

// Listen starts serving on addr and returns the server and its address.
// Stop it with GracefulStop or Stop.
func Listen(addr string, opts ...grpc.ServerOption) (*grpc.Server, string, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("echo: listen: %w", err)
	}
	gs := NewServer(opts...)
	go gs.Serve(lis)
	return gs, lis.Addr().String(), nil
}

// MetricsHandler serves the process metrics tokenvault exposes too
// (process_cpu_seconds_total above all), so that tvbench can compare the
// two servers' CPU per call when the echo runs on another machine. No
// request metrics: the echo must stay a no-op.
func MetricsHandler() http.Handler {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	return promhttp.HandlerFor(r, promhttp.HandlerOpts{})
}

func (*server) Tokenize(_ context.Context, req *pb.TokenizeRequest) (*pb.TokenizeResponse, error) {
	if req.GetSubjectId() == "" {
		return nil, status.Error(codes.InvalidArgument, "subject_id: required")
	}
	toks := make([]string, len(req.GetFields()))
	for i, f := range req.GetFields() {
		toks[i] = f.GetValue()
	}
	return &pb.TokenizeResponse{Tokens: toks}, nil
}

func (*server) Detokenize(_ context.Context, req *pb.DetokenizeRequest) (*pb.DetokenizeResponse, error) {
	out := &pb.DetokenizeResponse{Results: make([]*pb.DetokenizeResult, len(req.GetTokens()))}
	for i, t := range req.GetTokens() {
		out.Results[i] = &pb.DetokenizeResult{Status: &pb.ItemStatus{}, Value: t, Kind: pb.Kind_KIND_GENERIC}
	}
	return out, nil
}

func (*server) Mask(_ context.Context, req *pb.MaskRequest) (*pb.MaskResponse, error) {
	out := &pb.MaskResponse{Results: make([]*pb.MaskResult, len(req.GetTokens()))}
	for i, t := range req.GetTokens() {
		out.Results[i] = &pb.MaskResult{Status: &pb.ItemStatus{}, Masked: t, Kind: pb.Kind_KIND_GENERIC}
	}
	return out, nil
}

func (*server) Encrypt(_ context.Context, req *pb.EncryptRequest) (*pb.EncryptResponse, error) {
	blobs := make([][]byte, len(req.GetItems()))
	for i, it := range req.GetItems() {
		blobs[i] = it.GetPlaintext()
	}
	return &pb.EncryptResponse{Blobs: blobs}, nil
}

func (*server) Decrypt(_ context.Context, req *pb.DecryptRequest) (*pb.DecryptResponse, error) {
	out := &pb.DecryptResponse{Results: make([]*pb.DecryptResult, len(req.GetItems()))}
	for i, it := range req.GetItems() {
		out.Results[i] = &pb.DecryptResult{Status: &pb.ItemStatus{}, Plaintext: it.GetBlob()}
	}
	return out, nil
}

func (*server) EraseSubject(_ context.Context, req *pb.EraseSubjectRequest) (*pb.EraseSubjectResponse, error) {
	return &pb.EraseSubjectResponse{Receipt: &pb.ErasureReceipt{SubjectId: req.GetSubjectId()}}, nil
}
