// Package grpcserver is the thin gRPC layer over the vault domain: it
// decodes requests, calls [vault.Vault], and maps errors through one table
// (status.go). It also builds the *grpc.Server with the health service,
// reflection, panic recovery and request logging.
package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// MaxMessageBytes bounds one request (documented in the proto).
const MaxMessageBytes = 16 << 20

// Server implements tokenvault.v1.TokenVault over a vault.Vault.
type Server struct {
	pb.UnimplementedTokenVaultServer
	mapper // errors → statuses (status.go)
	v      *vault.Vault
	// OnBatch, if set, is told each batch request's size (for metrics).
	OnBatch func(rpc string, n int)
	// AccessLog logs every call at Info (config log.access, on by
	// default); off, successful calls are logged only at Debug. Failures
	// are logged at Info either way.
	AccessLog bool
}

func (s *Server) observeBatch(rpc string, n int) {
	if s.OnBatch != nil {
		s.OnBatch(rpc, n)
	}
}

// New returns the service implementation.
func New(v *vault.Vault, log *slog.Logger) *Server {
	return &Server{mapper: mapper{orDefault(log)}, v: v, AccessLog: true}
}

func orDefault(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.Default()
	}
	return log
}

// Limits per client connection (see NewGRPCServer).
const (
	// MaxConcurrentStreams: calls in flight on one connection; more wait
	// in the client until one finishes (HTTP/2 flow control).
	MaxConcurrentStreams = 1000
	// keepaliveMinTime: the fastest a client may ping (grpc-go clients
	// default to no pings; 10s or more is the norm).
	keepaliveMinTime = 5 * time.Second
	// maxConnectionIdle closes connections without calls for this long.
	maxConnectionIdle = 15 * time.Minute
	// The server pings an idle-looking connection every keepaliveTime and
	// drops it if no answer comes within keepaliveTimeout (dead peers).
	keepaliveTime    = 2 * time.Minute
	keepaliveTimeout = 20 * time.Second
)

// streamWorkers is the number of reused handler goroutines: enough for the
// calls in flight of a busy server (tvbench's default is 64).
const streamWorkers = 256

// NewGRPCServer returns a *grpc.Server with the TokenVault and KeyAdmin
// services, the gRPC health service (reported SERVING) and reflection
// registered, plus recovery and logging interceptors. extra options (e.g.
// TLS credentials) are appended.
func NewGRPCServer(s *Server, admin *Admin, extra ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		// Reuse handler goroutines: a fresh goroutine per call grows its
		// stack through badger's deep read path every time (stack copying
		// was ~15% of CPU in a detokenize profile, BENCHMARKS.md). gRPC
		// falls back to a fresh goroutine whenever every worker is busy, so
		// there must be as many workers as calls in flight, not as CPUs;
		// an idle worker costs only its stack.
		grpc.NumStreamWorkers(streamWorkers),
		// Bound what one client connection can hold open: calls in
		// flight (gRPC's default is unlimited), and pings (a client may
		// not ping more often than keepaliveMinTime; one that does is
		// disconnected, so pings cannot be used to keep the server busy).
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: maxConnectionIdle, Time: keepaliveTime, Timeout: keepaliveTimeout}),
		// logUnary runs recoverUnary itself: one interceptor fewer in
		// gRPC's chain is one closure fewer allocated per call.
		grpc.ChainUnaryInterceptor(s.logUnary),
		grpc.ChainStreamInterceptor(s.logStream, s.recoverStream),
	}, extra...)
	gs := grpc.NewServer(opts...)
	pb.RegisterTokenVaultServer(gs, s)
	if admin != nil {
		pb.RegisterKeyAdminServer(gs, admin)
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(pb.TokenVault_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return gs, hs
}

// recoverPanic, deferred by the interceptors, turns a panic into Internal.
// It logs the stack but never the request or the panic value, either of
// which could hold a value.
func (s *Server) recoverPanic(method string, err *error) {
	if r := recover(); r != nil {
		ref := errorRef()
		s.log.Error("panic in handler", "method", method, "ref", ref, "stack", string(debug.Stack()))
		*err = internalError(ref).status()
	}
}

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	return h(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer s.recoverPanic(info.FullMethod, &err)
	return h(srv, ss)
}

// requestIDKey is the metadata key of the request id: taken from the
// caller if it sends one (so ids follow a request across services),
// generated otherwise, and echoed in the response header.
const requestIDKey = "x-request-id"

func requestID(ctx context.Context) string {
	// ValueFromIncomingContext, unlike FromIncomingContext, does not copy
	// every header of the call.
	if ids := metadata.ValueFromIncomingContext(ctx, requestIDKey); len(ids) > 0 && validRequestID(ids[0]) {
		return ids[0]
	}
	return errorRef()
}

// validRequestID keeps caller-chosen ids short and printable: they are
// logged.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// logUnary logs one line per call: method, request id, caller, code,
// duration and, for failures, the status message (which never holds a
// value; an internal error's message is its reference, so the line ties the
// reference to the request). Request and response bodies are never logged.
func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	id := requestID(ctx)
	grpc.SetHeader(ctx, metadata.MD{requestIDKey: {id}}) // the key is lower case already
	resp, err := s.recoverUnary(ctx, req, info, h)
	s.logCall(ctx, info.FullMethod, id, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	ctx := ss.Context()
	id := requestID(ctx)
	ss.SetHeader(metadata.Pairs(requestIDKey, id))
	err := h(srv, ss)
	s.logCall(ctx, info.FullMethod, id, start, err)
	return err
}

// codeOK is the attribute of every successful call, built once.
var codeOK = slog.String("code", codes.OK.String())

// logCall writes the call's line. The attributes are slog.Attr values
// added to the record rather than key/value pairs: pairs box each value
// into an interface (an allocation per call for the duration and every
// string), and five attributes fit in the record without a heap slice.
// The caller is the identity the tap established (ctx), as the audit log
// names it; never a credential.
//
// The line goes to the handler directly rather than through LogAttrs,
// which walks the stack for the caller's pc (runtime.Callers, ~0.8% of a
// detokenize call's server CPU) that only a handler with AddSource
// prints; the server's handlers (cmd/tokenvault newLogger) never set it.
// What is written, and that it is written before the reply, is as before.
func (s *Server) logCall(ctx context.Context, method, id string, start time.Time, err error) {
	h := s.log.Handler()
	level := slog.LevelInfo
	if err == nil && !s.AccessLog {
		level = slog.LevelDebug
	}
	// Checked first: reading the clock and the identity is wasted on a
	// line nobody writes.
	if !h.Enabled(ctx, level) {
		return
	}
	code := codeOK
	var st *status.Status
	if err != nil {
		st = status.Convert(err)
		code = slog.String("code", st.Code().String())
	}
	d := time.Since(start)
	r := slog.NewRecord(time.Now(), level, "rpc", 0)
	r.AddAttrs(slog.String("method", method), slog.String("request_id", id), callerAttr(ctx), code, slog.Duration("duration", d))
	if st != nil {
		r.AddAttrs(slog.String("error", st.Message()))
	}
	_ = h.Handle(ctx, r) // as LogAttrs: a failed log write does not fail the call
}

// callerAttr names the caller if the tap identified one. Otherwise (a
// server built without the guard) it is the empty Attr, which handlers
// leave out.
func callerAttr(ctx context.Context) slog.Attr {
	t, ok := identityFrom(ctx)
	if !ok {
		return slog.Attr{}
	}
	return slog.String("caller", t.caller)
}

func (s *Server) Tokenize(ctx context.Context, req *pb.TokenizeRequest) (*pb.TokenizeResponse, error) {
	fields := make([]vault.Field, len(req.GetFields()))
	for i, f := range req.GetFields() {
		// The domain has no token modes to check (a field is deterministic
		// or not), so the one enum it does not see is checked here: an
		// unknown mode is refused like an unknown kind (the vault's check),
		// not taken as random, which a newer client may not have meant.
		if _, ok := pb.TokenMode_name[int32(f.GetOptions().GetMode())]; !ok {
			return nil, s.toStatus("Tokenize", &vault.FieldError{Field: fmt.Sprintf("fields[%d].options.mode", i),
				Reason: "unknown token mode (TOKEN_MODE_RANDOM or TOKEN_MODE_DETERMINISTIC)", Err: vault.ErrInvalidArgument})
		}
		fields[i] = vault.Field{
			Kind:          kindFromPB(f.GetKind()),
			Value:         f.GetValue(),
			Deterministic: deterministic(f), // as the guard authorized and counted it
			ChecksumValid: f.GetOptions().GetChecksumValid(),
			Hold:          f.GetOptions().GetHold(),
		}
		if ttl := f.GetOptions().GetTtl(); ttl != nil {
			if err := ttl.CheckValid(); err != nil {
				return nil, s.toStatus("Tokenize", &vault.FieldError{Field: fmt.Sprintf("fields[%d].options.ttl", i), Reason: "not a valid duration", Err: vault.ErrInvalidArgument})
			}
			fields[i].TTL = ttl.AsDuration()
		}
	}
	s.observeBatch("Tokenize", len(fields))
	tokens, err := s.v.Tokenize(ctx, req.GetSubjectId(), fields)
	if err != nil {
		return nil, s.toStatus("Tokenize", err)
	}
	recordTokenized(ctx, fields, tokens)
	return &pb.TokenizeResponse{Tokens: tokens}, nil
}

func (s *Server) Detokenize(ctx context.Context, req *pb.DetokenizeRequest) (*pb.DetokenizeResponse, error) {
	s.observeBatch("Detokenize", len(req.GetTokens()))
	res, err := s.v.Detokenize(ctx, req.GetTokens(), req.GetPurpose())
	if err != nil {
		return nil, s.toStatus("Detokenize", err)
	}
	recordRevealed(ctx, req.GetTokens(), res)
	out := &pb.DetokenizeResponse{Results: make([]*pb.DetokenizeResult, len(res))}
	for i, r := range res {
		out.Results[i] = &pb.DetokenizeResult{Status: s.itemStatus("Detokenize", r.Err)}
		if r.Err == nil {
			out.Results[i].Value, out.Results[i].Kind = r.Value, kindToPB(r.Kind)
		}
	}
	return out, nil
}

func (s *Server) Mask(ctx context.Context, req *pb.MaskRequest) (*pb.MaskResponse, error) {
	s.observeBatch("Mask", len(req.GetTokens()))
	res, err := s.v.Mask(ctx, req.GetTokens())
	if err != nil {
		return nil, s.toStatus("Mask", err)
	}
	recordRevealed(ctx, req.GetTokens(), res)
	out := &pb.MaskResponse{Results: make([]*pb.MaskResult, len(res))}
	for i, r := range res {
		out.Results[i] = &pb.MaskResult{Status: s.itemStatus("Mask", r.Err)}
		if r.Err == nil {
			out.Results[i].Masked, out.Results[i].Kind = r.Value, kindToPB(r.Kind)
		}
	}
	return out, nil
}

func (s *Server) Encrypt(ctx context.Context, req *pb.EncryptRequest) (*pb.EncryptResponse, error) {
	items := make([]vault.EncryptItem, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = vault.EncryptItem{Plaintext: it.GetPlaintext(), Context: it.GetContext(), Hold: it.GetHold()}
	}
	s.observeBatch("Encrypt", len(items))
	blobs, err := s.v.Encrypt(ctx, req.GetSubjectId(), items)
	if err != nil {
		return nil, s.toStatus("Encrypt", err)
	}
	return &pb.EncryptResponse{Blobs: blobs}, nil
}

func (s *Server) Decrypt(ctx context.Context, req *pb.DecryptRequest) (*pb.DecryptResponse, error) {
	items := make([]vault.DecryptItem, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = vault.DecryptItem{Blob: it.GetBlob(), Context: it.GetContext()}
	}
	s.observeBatch("Decrypt", len(items))
	res, err := s.v.Decrypt(ctx, items, req.GetPurpose())
	if err != nil {
		return nil, s.toStatus("Decrypt", err)
	}
	recordDecrypted(ctx, items, res)
	out := &pb.DecryptResponse{Results: make([]*pb.DecryptResult, len(res))}
	for i, r := range res {
		out.Results[i] = &pb.DecryptResult{Status: s.itemStatus("Decrypt", r.Err), Plaintext: r.Plaintext}
		if r.Err == nil { // a refused item's subject is for the audit record only (vault.Decrypted)
			out.Results[i].SubjectId = r.Subject
		}
	}
	return out, nil
}

func (s *Server) EraseSubject(ctx context.Context, req *pb.EraseSubjectRequest) (*pb.EraseSubjectResponse, error) {
	r, signed, err := s.v.EraseSubject(ctx, req.GetSubjectId())
	if err != nil {
		return nil, s.toStatus("EraseSubject", err)
	}
	out := &pb.EraseSubjectResponse{Receipt: &pb.ErasureReceipt{
		SubjectId:     r.Subject,
		ErasedAt:      timestamppb.New(r.ErasedAt),
		RecordsErased: r.Records,
		LookupsErased: r.Lookups,
	}, SignedReceipt: signed}
	addReceiptDetails(out.Receipt, r)
	return out, nil
}

// The proto enum and format.Kind use the same numbers; these conversions
// keep that assumption in one place (checked by a test).
func kindFromPB(k pb.Kind) format.Kind { return format.Kind(k) }
func kindToPB(k format.Kind) pb.Kind   { return pb.Kind(k) }
