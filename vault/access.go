package vault

import (
	"context"
	"errors"

	"github.com/tokenvault/tokenvault/vault/format"
)

// ErrPermissionDenied is wrapped by per-item errors for tokens whose kind
// the caller may not see (see WithKindFilter).
var ErrPermissionDenied = errors.New("permission denied")

// KindFilter reports whether the caller may see (reveal or mask) a token
// of kind k.
type KindFilter func(k format.Kind) bool

type kindFilterKey struct{}

// WithKindFilter returns ctx carrying f. Detokenize and Mask consult it
// for each token once its record is read — a token's kind is known only
// then — and before anything is decrypted: a token of a kind the filter
// refuses fails its own item with ErrPermissionDenied, the rest of the
// batch proceeds. The authorization layer sets it; the domain knows
// nothing of identities or policies.
func WithKindFilter(ctx context.Context, f KindFilter) context.Context {
	return context.WithValue(ctx, kindFilterKey{}, f)
}

func kindAllowed(ctx context.Context, k format.Kind) bool {
	f, ok := ctx.Value(kindFilterKey{}).(KindFilter)
	return !ok || f(k)
}

// deniedKind is the per-item error. It does not name the kind: callers
// learn no more about a token they may not see than that they may not.
func deniedKind(field string) error {
	return &FieldError{Field: field, Reason: "permission denied: the caller may not see tokens of this kind", Err: ErrPermissionDenied}
}

// ContextFilter reports whether the caller may decrypt blobs of context c.
type ContextFilter func(c string) bool

type contextFilterKey struct{}

// WithContextFilter returns ctx carrying f. Decrypt consults it for each
// item before the blob is parsed or any key is fetched: an item whose
// context the filter refuses fails with ErrPermissionDenied, the rest of
// the batch proceeds. The context an item names is the one its blob was
// sealed under (it is the AEAD's associated data), so naming an allowed
// context for another context's blob only fails to decrypt.
func WithContextFilter(ctx context.Context, f ContextFilter) context.Context {
	return context.WithValue(ctx, contextFilterKey{}, f)
}

func contextAllowed(ctx context.Context, c string) bool {
	f, ok := ctx.Value(contextFilterKey{}).(ContextFilter)
	return !ok || f(c)
}

// deniedContext is the per-item error for a context the caller may not
// decrypt. The caller named the context itself, so it is not repeated.
func deniedContext(field string) error {
	return &FieldError{Field: field, Reason: "permission denied: the caller may not decrypt blobs of this context", Err: ErrPermissionDenied}
}
