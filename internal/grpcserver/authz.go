package grpcserver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Authentication, authorization and audit, as interceptors.
//
// Every call to a tokenvault service passes through Guard: it identifies
// the caller (verified client certificate, or API key), checks the policy
// for the method's operation (methods table below), and writes the audit
// log for reveals, erasures, admin calls and every refused call. Health
// and reflection are public: they carry no data and load balancers and
// grpcurl need them without credentials.

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
	cfg      GuardConfig
	log      *slog.Logger
	refusals *refusals
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
	return &Guard{cfg: cfg, log: cfg.Logger, refusals: newRefusals(cfg.Audit, cfg.Logger)}, nil
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

// auditFinishTimeout bounds the wait for the audit entry of a call that
// has already run. The wait does not follow the caller's context: the
// operation took effect (an erasure, a rotation) whether or not the caller
// is still there, so its entry must be written regardless; a reveal whose
// caller left is withheld either way.
const auditFinishTimeout = 30 * time.Second

// identityKey carries the identity the tap handle established.
type identityKey struct{}

// tap runs on the connection's reader, when a call's headers arrive and
// before its request message is read or decoded: a caller that is not
// authenticated, or names a method the guard does not know, is refused
// before it can make the server decode up to MaxMessageBytes. It must not
// block: its refusals are audited asynchronously (refusals.go).
func (g *Guard) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	method := info.FullMethodName
	if public(method) {
		return ctx, nil
	}
	spec, known := methods[method]
	e := audit.Entry{Method: audit.Clip(method), Op: string(spec.op)}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		e.Peer = p.Addr.String()
	}
	if !known {
		return nil, g.refuseEntry(e, codes.PermissionDenied, errUnknownMethod(method))
	}
	id, err := g.authenticate(ctx)
	if err != nil {
		return nil, g.refuseEntry(e, codes.Unauthenticated, err)
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// errUnknownMethod: every mode fails closed on a method the guard has no
// entry for, including non-canonical spellings of a known one (gRPC routes
// "tokenvault.v1.TokenVault/ExportSubject", without the leading slash, to
// the same handler; the guard's table would miss it and, in dev mode,
// skip the purpose check and the audit).
func errUnknownMethod(method string) error {
	return fmt.Errorf("method %q is not a tokenvault method the guard knows (names are /package.Service/Method); refused", audit.Clip(method))
}

// auditMode says when a method's calls are written to the audit log
// (refused calls always are).
type auditMode int

const (
	auditNever     auditMode = iota
	auditAlways              // reveals, erasure, admin
	auditOnDenials           // when some item was refused (mask)
)

// methodSpec is what the guard knows of one RPC.
type methodSpec struct {
	op    auth.Operation
	audit auditMode
	// items lists the per-item outcomes for the audit log (req and resp
	// are the method's messages; resp is nil when the call failed).
	items func(h Auditor, req, resp any) []audit.Item
	// newReq, for server-streaming methods whose request the decision
	// needs, makes an empty request for the guard to read first.
	newReq func() proto.Message
}

// methods maps full method names to operations. A method missing here is
// refused under a policy (fail closed). New RPCs add themselves from their
// own file with an init function, e.g. for export:
//
//	func init() {
//		methods[pb.TokenVault_Export_FullMethodName] = methodSpec{op: auth.OpExport, audit: auditAlways}
//	}
//
// Purpose and subject are picked up from the request's GetPurpose and
// GetSubjectId methods, if it has them. The guard checks the operation
// (for the purpose) before the handler runs; a handler that learns more
// (say, the kinds of an export) checks each with
// auth.AccessFrom(ctx).Allow(op, kind, purpose), which is the same
// decision under the same policy snapshot.
var methods = map[string]methodSpec{
	pb.TokenVault_Tokenize_FullMethodName:     {op: auth.OpTokenize},
	pb.TokenVault_Detokenize_FullMethodName:   {op: auth.OpDetokenize, audit: auditAlways, items: tokenItems},
	pb.TokenVault_Mask_FullMethodName:         {op: auth.OpMask, audit: auditOnDenials, items: tokenItems},
	pb.TokenVault_Encrypt_FullMethodName:      {op: auth.OpEncrypt},
	pb.TokenVault_Decrypt_FullMethodName:      {op: auth.OpDecrypt, audit: auditAlways, items: blobItems},
	pb.TokenVault_EraseSubject_FullMethodName: {op: auth.OpErase, audit: auditAlways},
	pb.KeyAdmin_GetKekStatus_FullMethodName:   {op: auth.OpAdmin, audit: auditAlways},
	pb.KeyAdmin_RotateKek_FullMethodName:      {op: auth.OpAdmin, audit: auditAlways},
	pb.KeyAdmin_RetireKek_FullMethodName:      {op: auth.OpAdmin, audit: auditAlways},
	// Data-subject rights (issue 4).
	pb.TokenVault_ExportSubject_FullMethodName: {op: auth.OpExport, audit: auditAlways,
		newReq: func() proto.Message { return new(pb.ExportSubjectRequest) }},
	pb.TokenVault_RectifyToken_FullMethodName:      {op: auth.OpRectify, audit: auditAlways, items: rectifyItems},
	pb.TokenVault_RestrictSubject_FullMethodName:   {op: auth.OpRestrict, audit: auditAlways},
	pb.TokenVault_UnrestrictSubject_FullMethodName: {op: auth.OpRestrict, audit: auditAlways},
	// Backups hold every subject's (sealed) data and the ledger: admin only.
	pb.BackupAdmin_Backup_FullMethodName: {op: auth.OpAdmin, audit: auditAlways,
		newReq: func() proto.Message { return new(pb.BackupRequest) }},
	pb.BackupAdmin_ExportErasureLedger_FullMethodName: {op: auth.OpAdmin, audit: auditAlways,
		newReq: func() proto.Message { return new(pb.ExportErasureLedgerRequest) }},
}

// public methods need no identity. The receipt public key is public by
// design: anyone holding a receipt must be able to verify it.
func public(method string) bool {
	return method == pb.TokenVault_GetReceiptPublicKey_FullMethodName ||
		strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/")
}

// call is one call in flight.
type call struct {
	method string
	spec   methodSpec
	known  bool
	entry  audit.Entry
	id     auth.Identity
	req    any
	note   callNote
}

func (g *Guard) begin(ctx context.Context, method string, req any) *call {
	spec, known := methods[method]
	c := &call{method: method, spec: spec, known: known, req: req,
		entry: audit.Entry{Method: method, Op: string(spec.op)}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.entry.Peer = p.Addr.String()
	}
	if r, ok := req.(interface{ GetPurpose() string }); ok {
		c.entry.Purpose = audit.Clip(r.GetPurpose())
	}
	if r, ok := req.(interface{ GetSubjectId() string }); ok {
		c.entry.Subject = audit.Clip(r.GetSubjectId())
	}
	if r, ok := req.(*pb.BackupRequest); ok {
		// Who can read the backup is the point of auditing it.
		rs := r.GetRecipients()[:min(len(r.GetRecipients()), audit.MaxItems)]
		for _, rc := range rs {
			c.entry.Recipients = append(c.entry.Recipients, audit.Clip(rc))
		}
	}
	return c
}

// callNote is what a handler learns during a call that its audit entry
// must record but the request does not say (the subject behind a
// rectified token). The guard puts one in the call's context.
type callNote struct {
	mu      sync.Mutex
	subject string
}

type callNoteKey struct{}

// noteSubject records the call's subject for its audit entry.
func noteSubject(ctx context.Context, subject string) {
	if n, ok := ctx.Value(callNoteKey{}).(*callNote); ok {
		n.mu.Lock()
		n.subject = subject
		n.mu.Unlock()
	}
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
	ctx = context.WithValue(ctx, callNoteKey{}, &c.note)
	resp, err := h(ctx, req)
	if err := g.finish(c, req, resp, err); err != nil {
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
		ss = &replayStream{ServerStream: ss, req: req}
	}
	c := g.begin(ss.Context(), info.FullMethod, req)
	ctx, err := g.admit(ss.Context(), c, req)
	if err != nil {
		return err
	}
	if c.spec.audit == auditAlways {
		// A stream sends as it goes (values, a backup, the ledger, rewrap
		// progress), so it is audited before the first message leaves:
		// nothing leaves unaudited even if the stream dies.
		started := c.entry
		started.Outcome = "STARTED"
		if err := g.cfg.Audit.Write(ctx, started); err != nil {
			return status.Error(codes.Unavailable, "audit log unavailable; nothing was sent")
		}
	}
	err = h(srv, &guardedStream{ServerStream: ss, ctx: ctx})
	if aerr := g.finish(c, req, nil, err); aerr != nil {
		return aerr
	}
	return err
}

// replayStream hands the request the guard already read to the handler.
type replayStream struct {
	grpc.ServerStream
	req  proto.Message
	done bool
}

func (s *replayStream) RecvMsg(m any) error {
	if s.done {
		return s.ServerStream.RecvMsg(m)
	}
	s.done = true
	dst, ok := m.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "unexpected message type")
	}
	proto.Merge(dst, s.req)
	return nil
}

type guardedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *guardedStream) Context() context.Context { return s.ctx }

// admit authenticates and authorizes the call. A refused call is audited
// and answered with the status admit returns.
func (g *Guard) admit(ctx context.Context, c *call, req any) (context.Context, error) {
	if !c.known {
		// The tap refuses these first; this covers a server built without
		// the tap handle.
		return nil, g.refuse(c, codes.PermissionDenied, errUnknownMethod(c.method))
	}
	id, ok := ctx.Value(identityKey{}).(auth.Identity)
	if !ok {
		var err error
		if id, err = g.authenticate(ctx); err != nil {
			return nil, g.refuse(c, codes.Unauthenticated, err)
		}
	}
	c.id = id
	c.entry.Caller, c.entry.Auth = id.String(), string(id.Method)
	op := c.spec.op
	if c.known && op.Reveal() && c.entry.Purpose == "" {
		return nil, g.refuse(c, codes.InvalidArgument, errors.New("purpose: required: every reveal must say why the value is needed"))
	}
	if g.cfg.Policy == nil {
		ctx = auth.WithAccess(ctx, auth.DevAccess(id))
	} else {
		pol := g.cfg.Policy.Current()
		if pol == nil {
			// Cannot happen with a loaded source; fail closed if it does.
			return nil, g.refuse(c, codes.PermissionDenied, errors.New("no policy in force"))
		}
		// Handlers can check what they learn later (auth.AccessFrom).
		ctx = auth.WithAccess(ctx, auth.NewAccess(id, pol))
		purpose := c.entry.Purpose
		if err := pol.Authorize(id, op, auth.AnyKind, purpose); err != nil {
			return nil, g.refuse(c, codes.PermissionDenied, err)
		}
		switch op {
		case auth.OpTokenize:
			// Kinds and modes are in the request: refuse the whole call,
			// naming the field, before anything is written. Deterministic
			// mode is a permission of its own (auth.OpTokenizeDeterministic).
			if r, ok := req.(*pb.TokenizeRequest); ok {
				for i, f := range r.GetFields() {
					k := format.Kind(f.GetKind())
					if !k.Valid() {
						continue // the vault answers InvalidArgument
					}
					fop, field := op, "kind"
					if deterministic(f) {
						fop, field = auth.OpTokenizeDeterministic, "options.mode"
					}
					if err := pol.Authorize(id, fop, k, purpose); err != nil {
						return nil, g.refuse(c, codes.PermissionDenied, fmt.Errorf("fields[%d].%s: %w", i, field, err))
					}
				}
				if err := g.cfg.Limiter.admitTokenize(id, r.GetFields()); err != nil {
					return nil, g.refuse(c, codes.ResourceExhausted, err)
				}
			}
		case auth.OpEncrypt:
			// Contexts are in the request, as kinds are for tokenize.
			if r, ok := req.(*pb.EncryptRequest); ok {
				for i, it := range r.GetItems() {
					if err := pol.AuthorizeContext(id, op, it.GetContext(), purpose); err != nil {
						return nil, g.refuse(c, codes.PermissionDenied, fmt.Errorf("items[%d].context: %w", i, err))
					}
				}
			}
		case auth.OpDecrypt:
			// Checked per item, like kinds for detokenize, so that one blob
			// of another context does not fail the batch.
			ctx = vault.WithContextFilter(ctx, func(blobContext string) bool {
				return pol.AuthorizeContext(id, op, blobContext, purpose) == nil
			})
		case auth.OpDetokenize, auth.OpMask:
			// Kinds are known per item, once the record is read.
			ctx = vault.WithKindFilter(ctx, func(k format.Kind) bool {
				return pol.Authorize(id, op, k, purpose) == nil
			})
		}
	}
	if c.spec.audit == auditAlways {
		// Do not even start an operation that could not be audited.
		if err := g.cfg.Audit.Healthy(); err != nil {
			g.log.Error("refusing an audited call: audit log unavailable", "method", c.method, "caller", c.entry.Caller)
			return nil, status.Error(codes.Unavailable, "audit log unavailable; the call was not carried out")
		}
	}
	return ctx, nil
}

// refuse audits and logs a refused call and returns its status.
func (g *Guard) refuse(c *call, code codes.Code, err error) error {
	if c.spec.items != nil && c.req != nil {
		// Which tokens someone tried to see is evidence too.
		items := c.spec.items(g.cfg.Audit, c.req, nil)
		if len(items) > audit.MaxItems {
			c.entry.ItemsOmitted = len(items) - audit.MaxItems
			items = items[:audit.MaxItems]
		}
		c.entry.Items = items
	}
	return g.refuseEntry(c.entry, code, err)
}

// refuseEntry audits (without waiting, see refusals.go) and logs a refused
// call and returns its status.
func (g *Guard) refuseEntry(e audit.Entry, code codes.Code, err error) error {
	msg := err.Error()
	e.Outcome, e.Reason = code.String(), audit.Clip(msg)
	g.refusals.add(e)
	return refusalStatus(code, err)
}

// finish writes the audit entry of an admitted call. A non-nil return
// replaces the call's result: an unaudited result is never sent.
func (g *Guard) finish(c *call, req, resp any, callErr error) error {
	items := []audit.Item(nil)
	if c.spec.items != nil {
		items = c.spec.items(g.cfg.Audit, req, resp)
	}
	switch c.spec.audit {
	case auditNever:
		return nil
	case auditOnDenials:
		if !anyDenied(items) {
			return nil
		}
	}
	c.entry.Outcome = status.Code(callErr).String()
	c.note.mu.Lock()
	if c.note.subject != "" && c.entry.Subject == "" {
		c.entry.Subject = audit.Clip(c.note.subject)
	}
	c.note.mu.Unlock()
	if len(items) > audit.MaxItems {
		c.entry.ItemsOmitted = len(items) - audit.MaxItems
		items = items[:audit.MaxItems]
	}
	c.entry.Items = items
	ctx, cancel := context.WithTimeout(context.Background(), auditFinishTimeout)
	defer cancel()
	if err := g.cfg.Audit.Write(ctx, c.entry); err != nil {
		g.log.Error("audit log write failed; withholding the call's result", "method", c.method, "caller", c.entry.Caller, "err", err)
		if c.spec.op.Reveal() {
			return status.Error(codes.Unavailable, "audit log unavailable; nothing was revealed")
		}
		return status.Error(codes.Unavailable, "audit log unavailable; the operation may have taken effect but its result is withheld")
	}
	return nil
}

func anyDenied(items []audit.Item) bool {
	for _, it := range items {
		if it.Outcome == codes.PermissionDenied.String() {
			return true
		}
	}
	return false
}

// authenticate finds the caller: a verified client certificate or an API
// key (not both: one call, one identity). Without either, the caller is
// anonymous in dev mode and refused otherwise.
func (g *Guard) authenticate(ctx context.Context) (auth.Identity, error) {
	var cert *x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			cert = ti.State.VerifiedChains[0][0]
		}
	}
	key, hasKey, err := bearer(ctx)
	if err != nil {
		return auth.Identity{}, err
	}
	switch {
	case cert != nil && hasKey:
		return auth.Identity{}, fmt.Errorf("%w: both a client certificate and an API key were presented; use one", auth.ErrUnauthenticated)
	case cert != nil:
		return auth.CertIdentity(cert)
	case hasKey:
		return g.cfg.APIKeys.Identify(key)
	case g.cfg.Policy == nil:
		return auth.Identity{Method: auth.MethodNone}, nil
	default:
		return auth.Identity{}, fmt.Errorf("%w: no client certificate or API key (send \"authorization: Bearer <API key>\")", auth.ErrUnauthenticated)
	}
}

// bearer reads "authorization: Bearer <key>". Its errors never contain the
// header's value.
func bearer(ctx context.Context) (string, bool, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	switch len(vals) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", false, fmt.Errorf("%w: more than one authorization header", auth.ErrUnauthenticated)
	}
	scheme, key, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(key) == "" {
		return "", false, fmt.Errorf("%w: authorization header is not \"Bearer <API key>\"", auth.ErrUnauthenticated)
	}
	return strings.TrimSpace(key), true, nil
}

// tokenItems describes Detokenize and Mask items: keyed token hash, kind
// (when revealed) and outcome.
func tokenItems(h Auditor, req, resp any) []audit.Item {
	type result interface {
		GetStatus() *pb.ItemStatus
		GetKind() pb.Kind
	}
	var tokens []string
	var results []result
	switch r := req.(type) {
	case *pb.DetokenizeRequest:
		tokens = r.GetTokens()
		if out, ok := resp.(*pb.DetokenizeResponse); ok {
			for _, x := range out.GetResults() {
				results = append(results, x)
			}
		}
	case *pb.MaskRequest:
		tokens = r.GetTokens()
		if out, ok := resp.(*pb.MaskResponse); ok {
			for _, x := range out.GetResults() {
				results = append(results, x)
			}
		}
	}
	// Items beyond MaxItems stay empty: counted (items_omitted), not hashed.
	items := make([]audit.Item, len(tokens))
	for i, t := range tokens[:min(len(tokens), audit.MaxItems)] {
		items[i].Token = h.TokenHash(t)
		items[i].Outcome = "not_attempted"
		if i < len(results) {
			items[i].Outcome = codes.Code(results[i].GetStatus().GetCode()).String()
			if k := format.Kind(results[i].GetKind()); k.Valid() {
				items[i].Kind = k.String()
			}
		}
	}
	return items
}

// rectifyItems names the rectified token (its keyed hash).
func rectifyItems(h Auditor, req, resp any) []audit.Item {
	r, _ := req.(*pb.RectifyTokenRequest)
	if r == nil {
		return nil
	}
	it := audit.Item{Token: h.TokenHash(r.GetToken()), Outcome: "not_attempted"}
	if resp != nil {
		it.Outcome = codes.OK.String()
	}
	return []audit.Item{it}
}

// blobItems describes Decrypt items: subject (when decrypted), context
// and outcome.
func blobItems(_ Auditor, req, resp any) []audit.Item {
	r, _ := req.(*pb.DecryptRequest)
	out, _ := resp.(*pb.DecryptResponse)
	items := make([]audit.Item, len(r.GetItems()))
	for i, it := range r.GetItems() {
		if i >= audit.MaxItems {
			break
		}
		items[i] = audit.Item{Context: audit.Clip(it.GetContext()), Outcome: "not_attempted"}
		if i < len(out.GetResults()) {
			res := out.GetResults()[i]
			items[i].Outcome = codes.Code(res.GetStatus().GetCode()).String()
			items[i].Subject = audit.Clip(res.GetSubjectId())
		}
	}
	return items
}
