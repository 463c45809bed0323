package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/errinfo"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Forwarded reveals of volatile tokens (issue 17, several replicas).
//
// A volatile token lives only in the memory of the replica that issued it,
// its holder (named in the token). A replica that gets a Detokenize of a
// peer's token authorizes its caller as for any reveal (guard: identity,
// purpose, kind card-security-code), then forwards the one token to the
// holder over ReplicaPeer.RevealVolatile, under its own identity (Peers,
// the client side). The holder's guard admits the call only for an
// identity its policy allows volatile-forward (the replicas' own), and its
// handler (PeerServer) reveals the token exactly as a local reveal: one
// store read (an erasure through any replica stops it), the restriction,
// and the burn under the arena's lock, so of concurrent reveals through
// any replicas exactly one gets the last reveal. Both replicas audit: the
// forwarder its caller's Detokenize as usual, the holder the forward,
// naming the forwarding identity (Caller), the original caller and the
// forwarding replica (OriginCaller, OriginReplica).

// PeerServer implements tokenvault.v1.ReplicaPeer over a vault.
type PeerServer struct {
	pb.UnimplementedReplicaPeerServer
	mapper
	v *vault.Vault
}

// NewPeerServer returns the holder side of forwarded reveals.
func NewPeerServer(v *vault.Vault, log *slog.Logger) *PeerServer {
	return &PeerServer{mapper: mapper{orDefault(log)}, v: v}
}

func (s *PeerServer) RevealVolatile(ctx context.Context, req *pb.RevealVolatileRequest) (*pb.RevealVolatileResponse, error) {
	val, kind, err := s.v.RevealForwarded(ctx, req.GetToken(), req.GetPurpose())
	recordRevealed(ctx, []string{req.GetToken()}, []vault.Revealed{{Value: val, Kind: kind, Err: err}})
	if err != nil {
		return nil, s.toStatus("RevealVolatile", err)
	}
	return &pb.RevealVolatileResponse{Value: val, Kind: kindToPB(kind)}, nil
}

// forwardedEntry fills in the audit entry of a forwarded reveal: who asked
// the forwarding replica, and which replica that was. They are the
// forwarder's word, trusted because only an identity allowed
// volatile-forward gets this far (refusals record them too, clipped).
func forwardedEntry(e *audit.Entry, req any) {
	if r, ok := req.(*pb.RevealVolatileRequest); ok {
		e.OriginCaller, e.OriginReplica = audit.Clip(r.GetOriginalCaller()), audit.Clip(r.GetFromReplica())
	}
}

// Peer is one other replica, as Peers reaches it.
type Peer struct {
	Replica string // its replica.id (logs and errors)
	Client  pb.ReplicaPeerClient
}

// Peers forwards reveals of other replicas' volatile tokens to their
// holders (vault.VolatilePeers). internal/app dials the connections (TLS,
// the API key) and closes them.
type Peers struct {
	self     string // this replica's replica.id, sent for the holder's audit entry
	timeout  time.Duration
	log      *slog.Logger
	byHolder map[string]Peer
}

var _ vault.VolatilePeers = (*Peers)(nil)

// NewPeers returns the forwarder. byHolder maps each peer's holder id to
// it; timeout caps one forwarded call (the caller's deadline, if sooner,
// wins).
func NewPeers(self string, byHolder map[string]Peer, timeout time.Duration, log *slog.Logger) *Peers {
	return &Peers{self: self, timeout: timeout, log: orDefault(log), byHolder: byHolder}
}

// Known reports whether holder is a peer's.
func (p *Peers) Known(holder string) bool {
	_, ok := p.byHolder[holder]
	return ok
}

// RevealVolatile forwards one reveal to the holder. The holder's answer
// comes back as the vault's own error (its NotFound, erasure, restriction
// are answers about the token); anything that keeps the holder from
// answering is vault.ErrVolatileHolderUnavailable, naming the replica
// (never the token).
func (p *Peers) RevealVolatile(ctx context.Context, holder, token, purpose string) (string, format.Kind, error) {
	peer, ok := p.byHolder[holder]
	if !ok {
		return "", 0, vault.ErrVolatileHolderUnavailable // vault checks Known first
	}
	fctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := peer.Client.RevealVolatile(fctx, &pb.RevealVolatileRequest{Token: token, Purpose: purpose,
		OriginalCaller: auth.AccessFrom(ctx).ID.String(), FromReplica: p.self})
	if err != nil {
		return "", 0, p.peerError(ctx, peer, err)
	}
	return resp.GetValue(), kindFromPB(resp.GetKind()), nil
}

// answers are the holder's reasons that are answers about the token, as
// the vault's sentinels: the caller gets them as from a local reveal.
var answers = map[string]error{
	errinfo.NotFound:           vault.ErrNotFound,
	errinfo.SubjectErased:      vault.ErrErased,
	errinfo.ConsentRequired:    vault.ErrNoConsent,
	errinfo.FailedPrecondition: vault.ErrRestricted, // the one precondition of a volatile reveal
	errinfo.InvalidArgument:    vault.ErrInvalidArgument,
}

func (p *Peers) peerError(ctx context.Context, peer Peer, err error) error {
	st := status.Convert(err)
	reason, desc := "", ""
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == errinfo.Domain {
				reason = d.GetReason()
			}
		case *errdetails.BadRequest:
			if v := d.GetFieldViolations(); len(v) == 1 {
				desc = v[0].GetDescription()
			}
		}
	}
	if sentinel, ok := answers[reason]; ok {
		// The holder's text for its field "token", which the vault renames
		// to the caller's item. It names no value or token (status.go).
		return &vault.FieldError{Field: "token", Reason: strings.TrimPrefix(desc, "token: "), Err: sentinel}
	}
	if cerr := ctx.Err(); cerr != nil {
		// The caller's own deadline or cancellation, not the holder's
		// fault (p.timeout running out is: the holder did not answer).
		return fmt.Errorf("forwarding a volatile reveal to replica %q: %w", peer.Replica, cerr)
	}
	why := "is unreachable or failed"
	switch st.Code() {
	case codes.DeadlineExceeded:
		why = "did not answer in time (volatile.forward.timeout)"

	case codes.PermissionDenied, codes.Unauthenticated:
		why = "refused this replica's forward (its policy must allow volatile-forward to this replica's identity)"
	case codes.Unavailable:
		why = "is unreachable"
		if reason == errinfo.AuditUnavailable {
			why = "cannot write its audit log"
		}
	}
	// Logged with the holder's status text, which never holds a token or
	// value (its error table), to find which replica and why.
	p.log.Warn("forwarded volatile reveal failed", "holder_replica", peer.Replica, "code", st.Code().String(), "reason", reason, "err", st.Message())
	return &vault.FieldError{Field: "token", Err: vault.ErrVolatileHolderUnavailable,
		Reason: fmt.Sprintf("the replica %q holding this volatile token %s; nothing was revealed", peer.Replica, why)}
}
