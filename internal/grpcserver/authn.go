package grpcserver

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"

	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/auth"
)

// Authentication: who the caller is.

// identityKey carries the identity the tap handle established, as a
// *tapped.
type identityKey struct{}

// tapped is the caller as the tap established it, with its name as logs
// and audit entries spell it formatted once per call (the guard and the
// access log both need it; Identity.String allocates).
type tapped struct {
	id     auth.Identity
	caller string
}

func withIdentity(ctx context.Context, id auth.Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, &tapped{id: id, caller: id.String()})
}

// identityFrom returns the identity the tap established, if any.
func identityFrom(ctx context.Context) (*tapped, bool) {
	t, ok := ctx.Value(identityKey{}).(*tapped)
	return t, ok
}

// tap runs on the connection's reader, when a call's headers arrive and
// before its request message is read or decoded: a caller that is not
// authenticated, or names a method the guard does not know, is refused
// before it can make the server decode up to MaxMessageBytes. It must not
// block: its refusals are audited asynchronously (refusals.go). grpc-go
// sends the status it returns, details included (the table in status.go).
func (g *Guard) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	method := info.FullMethodName
	if public(method) {
		return ctx, nil
	}
	spec, known := methods[method]
	if !known {
		return nil, g.refuseEntry(method, tapEntry(ctx, method, spec), unknownMethod(method))
	}
	id, err := g.authenticate(ctx)
	if err != nil {
		return nil, g.refuseEntry(method, tapEntry(ctx, method, spec), err)
	}
	return withIdentity(ctx, id), nil
}

// tapEntry is the audit entry of a call the tap refuses. It is built only
// then: formatting the peer's address costs two allocations, on every
// call if done up front.
func tapEntry(ctx context.Context, method string, spec methodSpec) audit.Entry {
	e := audit.Entry{Method: audit.Clip(method), Op: string(spec.op)}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		e.Peer = p.Addr.String()
	}
	return e
}

// authenticate finds the caller: a verified client certificate or an API
// key (not both: one call, one identity). Without either, the caller is
// anonymous in dev mode and refused otherwise. Its errors wrap
// auth.ErrUnauthenticated.
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
	return g.identify(cert, key, hasKey)
}

// identify is authenticate's decision, shared with in-process callers
// (Identify).
func (g *Guard) identify(cert *x509.Certificate, key string, hasKey bool) (auth.Identity, error) {
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
