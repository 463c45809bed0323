// Package auth decides who is calling and what they may do.
//
// Identities come from the transport: a client certificate verified by
// mutual TLS (its URI SANs, e.g. SPIFFE ids, and DNS SANs), or an API key
// sent as "authorization: Bearer <key>" and checked against SHA-256 hashes
// kept in the configuration ([APIKeys]). A [Policy] (a YAML file, see
// [ParsePolicy]) maps identities to roles and roles to permissions:
// operation × token kind (or blob context) × purpose.
//
// The package knows nothing of gRPC; internal/grpcserver extracts the
// certificate and the bearer key from a call and asks this package.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tokenvault/tokenvault/vault/format"
)

// Operation is what a caller asks to do. Permissions are granted per
// operation.
type Operation string

// Operations. Reveal operations (detokenize, decrypt, export) hand out
// values and always need a purpose.
const (
	OpTokenize Operation = "tokenize"
	// OpTokenizeDeterministic is tokenize in deterministic mode, a
	// permission of its own: handing back the existing token for a
	// (subject, kind, value) lets a caller that holds a token test guesses
	// of its value, which for low-entropy kinds (an SSN, a PAN whose first
	// 6 and last 4 digits are known) is as good as detokenize.
	OpTokenizeDeterministic Operation = "tokenize-deterministic"
	OpDetokenize            Operation = "detokenize"
	OpMask                  Operation = "mask"
	OpEncrypt               Operation = "encrypt"
	OpDecrypt               Operation = "decrypt"
	OpErase                 Operation = "erase"
	OpExport                Operation = "export"
	OpRestrict              Operation = "restrict"
	OpRectify               Operation = "rectify"
	OpAdmin                 Operation = "admin" // the KeyAdmin service (KEK rotation)
	// OpConsent grants and withdraws subjects' consent (purposes.go).
	OpConsent Operation = "consent"
	// OpWatchErasures watches erasure events as the consumers its
	// permission names (purposes.go).
	OpWatchErasures Operation = "watch-erasures"
	// OpVolatileForward reveals, on the replica that holds it, a volatile
	// token another replica was asked to reveal (ReplicaPeer): for the
	// replicas' own identities only. The forwarding replica authorized
	// its caller; the holder trusts it to have done so, which is why the
	// permission is one of its own.
	OpVolatileForward Operation = "volatile-forward"
)

// Operations lists every operation, in a stable order.
var Operations = []Operation{OpTokenize, OpTokenizeDeterministic, OpDetokenize, OpMask, OpEncrypt, OpDecrypt,
	OpErase, OpExport, OpRestrict, OpRectify, OpAdmin, OpConsent, OpWatchErasures, OpVolatileForward}

// Valid reports whether o is a known operation.
func (o Operation) Valid() bool { return slices.Contains(Operations, o) }

// Reveal reports whether o hands out plaintext values; such calls need a
// purpose and are always audited.
func (o Operation) Reveal() bool {
	return o == OpDetokenize || o == OpDecrypt || o == OpExport || o == OpVolatileForward
}

// KindScoped reports whether permissions for o may name token kinds: the
// operations that act on tokens of one kind each.
func (o Operation) KindScoped() bool {
	return o == OpTokenize || o == OpTokenizeDeterministic || o == OpDetokenize || o == OpMask
}

// ContextScoped reports whether permissions for o may name blob contexts:
// encrypt and decrypt, whose items each carry one.
func (o Operation) ContextScoped() bool { return o == OpEncrypt || o == OpDecrypt }

// Sentinels. Errors from this package wrap one of them; their text names
// the identity and the operation but never a key, a token or a value.
var (
	// ErrUnauthenticated: no identity, or one that could not be verified
	// (unknown API key, certificate without a usable name).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: a known identity without the permission.
	ErrPermissionDenied = errors.New("permission denied")
)

// Method says how a caller was identified.
type Method string

const (
	MethodMTLS   Method = "mtls"    // verified client certificate
	MethodAPIKey Method = "api_key" // API key
	// MethodNone: nobody identified; allowed only in loopback dev mode
	// (no policy file).
	MethodNone Method = "none"
)

// Identity is an authenticated caller. It is a plain value so that any
// layer (the domain included) can carry it without importing transport
// packages.
type Identity struct {
	// Name is the caller's primary name: the certificate's first URI SAN
	// (else its first DNS SAN), or the API key's configured name.
	Name   string
	Method Method
	// URIs and DNSNames are all the certificate's SANs; policy entries
	// may match any of them.
	URIs     []string
	DNSNames []string
}

// String is the identity as written to logs and the audit log.
func (id Identity) String() string {
	switch id.Method {
	case MethodAPIKey:
		return "api_key:" + id.Name
	case MethodNone:
		return "anonymous"
	default:
		return id.Name
	}
}

// Access is what one call may do: the caller and the policy in force when
// the call was admitted. The gRPC guard puts it in the call's context;
// handlers that learn more as they go (a kind, a purpose) ask it with
// Allow, keyed by operation.
type Access struct {
	ID     Identity
	policy *Policy // nil only in dev mode (see DevAccess)
	dev    bool
}

// NewAccess is id's access under p (p must not be nil).
func NewAccess(id Identity, p *Policy) Access { return Access{ID: id, policy: p} }

// DevAccess allows everything: dev mode, no policy file.
func DevAccess(id Identity) Access { return Access{ID: id, dev: true} }

// Allow is Policy.Authorize for this call's caller. A zero Access (no
// guard ran) allows nothing.
func (a Access) Allow(op Operation, kind format.Kind, purpose string) error {
	switch {
	case a.dev:
		return nil
	case a.policy == nil:
		return denied(a.ID, "has no access (no policy)")
	}
	return a.policy.Authorize(a.ID, op, kind, purpose)
}

type accessKey struct{}

// WithAccess returns ctx carrying a.
func WithAccess(ctx context.Context, a Access) context.Context {
	return context.WithValue(ctx, accessKey{}, a)
}

// AccessFrom returns the call's access; without one, a zero Access that
// allows nothing.
func AccessFrom(ctx context.Context) Access {
	a, _ := ctx.Value(accessKey{}).(Access)
	return a
}

// denied builds a PermissionDenied error naming who and what, never data.
func denied(id Identity, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrPermissionDenied, id, fmt.Sprintf(format, args...))
}
