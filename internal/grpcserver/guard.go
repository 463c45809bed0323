package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// Authentication, authorization and audit, as interceptors.
//
// Every call to a tokenvault service passes through Guard: it identifies
// the caller (authn.go: verified client certificate, or API key), checks
// the policy for the method's operation (authz.go, with the methods table
// below), and writes the audit log for reveals, erasures, admin calls and
// every refused call (audit.go, refusals.go). Health and reflection are
// public: they carry no data and load balancers and grpcurl need them
// without credentials.

// PolicySource yields the policy in force (reloaded behind the scenes).
type PolicySource interface{ Current() *auth.Policy }

// Auditor is the audit log as the guard uses it.
type Auditor interface {
	// Write returns once e is durable (or ctx ends, or the log fails).
	Write(ctx context.Context, e audit.Entry) error
	// WriteAsync queues e without waiting (refusals; see refusals.go).
	WriteAsync(e audit.Entry) error
	Healthy() error
	TokenHash(token string) string
}

var (
	_ PolicySource = (*auth.PolicyFileSource)(nil)
	_ Auditor      = (*audit.Log)(nil)
)

// GuardConfig configures NewGuard.
type GuardConfig struct {
	// Policy: nil is dev mode — every caller, even an anonymous one, may
	// do everything. internal/app allows that only on a plaintext loopback
	// listener and says so in the log.
	Policy  PolicySource
	APIKeys *auth.APIKeys // nil: no API keys
	Audit   Auditor       // required
	Logger  *slog.Logger
	Limiter *Limiter // per-identity limits under a policy (limits.go); nil: none
}

// Guard holds the interceptors.
type Guard struct {
	mapper   // refusals are statuses of the one table (status.go)
	cfg      GuardConfig
	refusals *refusals
	// tokenHash is cfg.Audit.TokenHash, bound once: a method value taken
	// from an interface allocates, and every audited call needs it.
	tokenHash func(string) string
	bound     finishBound // the audit waits' deadline (audit.go)
}

// NewGuard returns the guard; pass its ServerOptions to NewGRPCServer.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if cfg.Audit == nil {
		return nil, errors.New("grpcserver: guard needs an audit log")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.APIKeys == nil {
		cfg.APIKeys, _ = auth.NewAPIKeys(nil)
	}
	return &Guard{mapper: mapper{cfg.Logger}, cfg: cfg, refusals: newRefusals(cfg.Audit, cfg.Logger),
		tokenHash: cfg.Audit.TokenHash}, nil
}

// Close writes the refusals still counted to the audit log. Call it after
// the gRPC server stopped and before the audit log is closed.
func (g *Guard) Close() { g.refusals.Close() }

// ServerOptions returns the tap handle (authentication before a request
// is read) and the interceptors (they run after logging and panic
// recovery).
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InTapHandle(g.tap),
		grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream)}
}

// methodSpec is what the guard knows of one RPC.
type methodSpec struct {
	op    auth.Operation
	audit auditMode
	// newReq, for server-streaming methods whose request the decision
	// needs, makes an empty request for the guard to read first
	// (replay.go).
	newReq func() proto.Message
}

// methods maps full method names to operations. A method missing here is
// refused in every mode (fail closed); a new RPC adds its entry here
// (TestEveryMethodHasAnOperation fails until it does).
//
// Purpose, subject and the items a call names (tokens, blob contexts,
// backup recipients) are picked up from the request's getters, if it has
// them (begin, attempted). The guard checks the operation (for the
// purpose) before the handler runs; a handler that learns more (say, the
// kinds of an export) checks each with auth.AccessFrom(ctx).Allow(op,
// kind, purpose), which is the same decision under the same policy
// snapshot. What the call did item by item comes from the handler, which
// records the vault's results for the audit entry (audit.go).
var methods = map[string]methodSpec{
	pb.TokenVault_Tokenize_FullMethodName:     {op: auth.OpTokenize, audit: auditDeterministic},
	pb.TokenVault_Detokenize_FullMethodName:   {op: auth.OpDetokenize, audit: auditAlways},
	pb.TokenVault_Mask_FullMethodName:         {op: auth.OpMask, audit: auditOnDenials},
	pb.TokenVault_Encrypt_FullMethodName:      {op: auth.OpEncrypt},
	pb.TokenVault_Decrypt_FullMethodName:      {op: auth.OpDecrypt, audit: auditAlways},
	pb.TokenVault_EraseSubject_FullMethodName: {op: auth.OpErase, audit: auditAlways},
	pb.KeyAdmin_GetKekStatus_FullMethodName:   {op: auth.OpAdmin, audit: auditAlways},
	pb.KeyAdmin_RotateKek_FullMethodName:      {op: auth.OpAdmin, audit: auditAlways},
	pb.KeyAdmin_RetireKek_FullMethodName:      {op: auth.OpAdmin, audit: auditAlways},
	pb.KeyAdmin_RotateAuditLog_FullMethodName: {op: auth.OpAdmin, audit: auditAlways},
	// Data-subject rights (issue 4).
	pb.TokenVault_ExportSubject_FullMethodName: {op: auth.OpExport, audit: auditAlways,
		newReq: func() proto.Message { return new(pb.ExportSubjectRequest) }},
	pb.TokenVault_RectifyToken_FullMethodName:      {op: auth.OpRectify, audit: auditAlways},
	pb.TokenVault_RestrictSubject_FullMethodName:   {op: auth.OpRestrict, audit: auditAlways},
	pb.TokenVault_UnrestrictSubject_FullMethodName: {op: auth.OpRestrict, audit: auditAlways},
	// Backups hold every subject's (sealed) data and the ledger: admin only.
	pb.BackupAdmin_Backup_FullMethodName: {op: auth.OpAdmin, audit: auditAlways,
		newReq: func() proto.Message { return new(pb.BackupRequest) }},
	pb.BackupAdmin_ExportErasureLedger_FullMethodName: {op: auth.OpAdmin, audit: auditAlways,
		newReq: func() proto.Message { return new(pb.ExportErasureLedgerRequest) }},
	// Consent per purpose and erasure notices (issue 16; consent.go,
	// erasures.go). The consumer a watch names is checked in authz.go.
	pb.TokenVault_GrantConsent_FullMethodName:    {op: auth.OpConsent, audit: auditAlways},
	pb.TokenVault_WithdrawConsent_FullMethodName: {op: auth.OpConsent, audit: auditAlways},
	pb.TokenVault_WatchErasures_FullMethodName: {op: auth.OpWatchErasures, audit: auditAlways,
		newReq: func() proto.Message { return new(pb.WatchErasuresRequest) }},
	pb.TokenVault_AckErasures_FullMethodName: {op: auth.OpWatchErasures, audit: auditOnDenials},
	// Legal holds (issue 16): the receipts of hold shreds are the rest of
	// an erasure's receipt, for whoever may erase.
	pb.TokenVault_GetHoldReceipts_FullMethodName: {op: auth.OpErase, audit: auditAlways},
	// Card checkout (issue 17): random tokens, audited like Tokenize's
	// (never, but for refusals); the kinds are checked in authorize.
	pb.TokenVault_TokenizeCard_FullMethodName: {op: auth.OpTokenize},
	// Forwarded reveals of volatile tokens (issue 17, peer.go): only for
	// identities allowed volatile-forward (the replicas' own), audited as
	// reveals with the original caller.
	pb.ReplicaPeer_RevealVolatile_FullMethodName: {op: auth.OpVolatileForward, audit: auditAlways},
}

// public methods need no identity. The receipt public key is public by
// design: anyone holding a receipt must be able to verify it.
func public(method string) bool {
	return method == pb.TokenVault_GetReceiptPublicKey_FullMethodName ||
		strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/")
}

// unknownMethod: every mode fails closed on a method the guard has no
// entry for, including non-canonical spellings of a known one (gRPC routes
// "tokenvault.v1.TokenVault/ExportSubject", without the leading slash, to
// the same handler; the guard's table would miss it and, in dev mode,
// skip the purpose check and the audit).
func unknownMethod(method string) error {
	return fmt.Errorf("method %q is not a tokenvault method the guard knows (names are /package.Service/Method); %w", audit.Clip(method), errUnknownMethod)
}

// call is one call in flight.
type call struct {
	method  string
	spec    methodSpec
	known   bool
	entry   audit.Entry
	id      auth.Identity
	purpose string // as the request states it; for reveals, once admitted, as vault.Purpose trims it (entry.Purpose is clipped)
	req     any
	rec     *record // nil for calls that are never audited, else &recStore
	always  bool    // audited whatever spec.audit says (Guard.CallAudited)
	// recStore is the record of an audited call, allocated with the call.
	recStore record
	// peer is the caller's address, formatted into entry.Peer only when
	// the entry is written (withPeer): most calls (a random tokenize) are
	// never audited, and formatting it costs two allocations.
	peer net.Addr
}

// withPeer fills in the entry's peer; every path that writes c.entry
// calls it first.
func (c *call) withPeer() {
	if c.peer != nil && c.entry.Peer == "" {
		c.entry.Peer = c.peer.String()
	}
}

func (g *Guard) begin(ctx context.Context, method string, req any) *call {
	spec, known := methods[method]
	c := &call{method: method, spec: spec, known: known, req: req, purpose: purposeOf(req),
		entry: audit.Entry{Method: method, Op: string(spec.op)}}
	c.entry.Purpose = audit.Clip(c.purpose)
	if spec.audit != auditNever && (spec.audit != auditDeterministic || hasDeterministic(req)) {
		c.recStore.hash = g.tokenHash
		c.rec = &c.recStore
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.peer = p.Addr
	}
	if r, ok := req.(interface{ GetSubjectId() string }); ok {
		c.entry.Subject = audit.Clip(r.GetSubjectId())
	}
	forwardedEntry(&c.entry, req) // peer.go
	if r, ok := req.(interface{ GetRecipients() []string }); ok {
		// Who can read the backup is the point of auditing it.
		rs := r.GetRecipients()[:min(len(r.GetRecipients()), audit.MaxItems)]
		for _, rc := range rs {
			c.entry.Recipients = append(c.entry.Recipients, audit.Clip(rc))
		}
	}
	return c
}

func (g *Guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if public(info.FullMethod) {
		return h(ctx, req)
	}
	c := g.begin(ctx, info.FullMethod, req)
	ctx, err := g.admit(ctx, c, req)
	if err != nil {
		return nil, err
	}
	resp, err := h(withRecord(ctx, c.rec), req)
	if err := g.finish(c, err); err != nil {
		return nil, err
	}
	return resp, err
}

func (g *Guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if public(info.FullMethod) {
		return h(srv, ss)
	}
	// A server-streaming call's request is normally read by the handler.
	// Where the decision needs it (purpose, subject), the guard reads it
	// first and replays it to the handler.
	var req proto.Message
	if spec, ok := methods[info.FullMethod]; ok && spec.newReq != nil {
		req = spec.newReq()
		if err := ss.RecvMsg(req); err != nil {
			return err
		}
		ss = &replayStream{ServerStream: ss, req: req, fail: func(err error) error { return g.toStatus(info.FullMethod, err) }}
	}
	c := g.begin(ss.Context(), info.FullMethod, req)
	ctx, err := g.admit(ss.Context(), c, req)
	if err != nil {
		return err
	}
	if err := g.started(ctx, c); err != nil {
		return err
	}
	err = h(srv, &guardedStream{ServerStream: ss, ctx: withRecord(ctx, c.rec)})
	if aerr := g.finish(c, err); aerr != nil {
		return aerr
	}
	return err
}

// hasDeterministic: a tokenize request with a deterministic field (only
// those calls are audited; random tokenize stays off the audit path).
func hasDeterministic(req any) bool {
	r, ok := req.(*pb.TokenizeRequest)
	if !ok {
		return false
	}
	for _, f := range r.GetFields() {
		if deterministic(f) {
			return true
		}
	}
	return false
}
