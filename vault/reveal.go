package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenvault/tokenvault/vault/format"
)

// Revealed is the outcome for one token of a batch. Err is per item (a
// *FieldError or an infrastructure error); the rest is set when Err is nil.
type Revealed struct {
	Value string
	Kind  format.Kind
	Err   error
}

// Detokenize reveals the values behind tokens. One bad, unknown or erased
// token fails only its own item.
func (v *Vault) Detokenize(ctx context.Context, tokens []string, purpose string) ([]Revealed, error) {
	if _, err := Purpose(purpose); err != nil {
		return nil, err
	}
	return v.reveal(ctx, tokens, false)
}

// Mask returns display masks of the values behind tokens, computed inside
// the vault so the caller never receives the value.
func (v *Vault) Mask(ctx context.Context, tokens []string) ([]Revealed, error) {
	return v.reveal(ctx, tokens, true)
}

func (v *Vault) reveal(ctx context.Context, tokens []string, mask bool) ([]Revealed, error) {
	if err := checkBatch("tokens", len(tokens)); err != nil {
		return nil, err
	}
	out := make([]Revealed, len(tokens))
	for i, t := range tokens {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		val, kind, err := v.openToken(ctx, item("tokens", i), t, !mask)
		if err == nil && mask && !format.IsVolatileToken(t) { // a volatile token's mask is constant
			val = format.Mask(kind, val)
		}
		out[i] = Revealed{Value: val, Kind: kind, Err: err}
	}
	return out, nil
}

// openToken opens the record of token. reveal is false for masks, which
// a restriction of processing does not block.
func (v *Vault) openToken(ctx context.Context, field, token string, reveal bool) (string, format.Kind, error) {
	if !format.LooksLikeToken(token) {
		return "", 0, invalid(field, "not a token")
	}
	if format.IsVolatileToken(token) {
		return v.openVolatile(ctx, field, token, reveal) // volatile.go
	}
	rec, err := v.store.Record(ctx, token)
	if errors.Is(err, ErrNotFound) {
		return "", 0, &FieldError{Field: field, Reason: unknownToken, Err: ErrNotFound}
	}
	if err != nil {
		return "", 0, err
	}
	if rec.Token != token {
		return "", 0, fmt.Errorf("%w: record under another token", ErrCorrupt)
	}
	if !kindAllowed(ctx, rec.Kind) {
		return "", 0, deniedKind(field)
	}
	if expired(rec, v.now()) {
		return "", 0, &FieldError{Field: field, Reason: expiredToken, Err: ErrExpired}
	}
	c, err := v.keysByID(ctx, rec.KeyID, reveal)
	if errors.Is(err, ErrErased) {
		return "", 0, &FieldError{Field: field, Reason: "the token's subject has been erased", Err: ErrErased}
	}
	if errors.Is(err, ErrRestricted) {
		return "", 0, &FieldError{Field: field, Err: ErrRestricted,
			Reason: "processing of the token's subject is restricted (RestrictSubject): values are not revealed until the restriction is lifted; masks still work"}
	}
	if err != nil {
		return "", 0, err
	}
	defer c.release()
	// The expiry was checked above, before the record was authenticated:
	// an expiry edited in the store makes this fail (RecordAADv2).
	plain, err := openRecord(c.keys, c.subject, rec)
	if err != nil {
		return "", 0, err
	}
	return plain, rec.Kind, nil
}
