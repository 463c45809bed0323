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
