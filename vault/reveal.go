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
	p, err := Purpose(purpose)
	if err != nil {
		return nil, err
	}
	return v.reveal(ctx, tokens, p)
}

// Mask returns display masks of the values behind tokens, computed inside
// the vault so the caller never receives the value.
func (v *Vault) Mask(ctx context.Context, tokens []string) ([]Revealed, error) {
	return v.reveal(ctx, tokens, "")
}

// reveal opens tokens for purpose; "" is a mask (no purpose, no consent).
func (v *Vault) reveal(ctx context.Context, tokens []string, purpose string) ([]Revealed, error) {
	mask := purpose == ""
	if err := checkBatch("tokens", len(tokens)); err != nil {
		return nil, err
	}
	out := make([]Revealed, len(tokens))
	for i, t := range tokens {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		val, kind, err := v.openToken(ctx, item("tokens", i), t, purpose)
		if err == nil && mask && !format.IsVolatileToken(t) { // a volatile token's mask is constant
			val = format.Mask(kind, val)
		}
		out[i] = Revealed{Value: val, Kind: kind, Err: err}
	}
	return out, nil
}

// openToken opens the record of token for purpose. purpose is "" for
// masks, which neither a restriction of processing, missing consent nor
// a legal hold blocks.
func (v *Vault) openToken(ctx context.Context, field, token, purpose string) (string, format.Kind, error) {
	reveal := purpose != ""
	if !format.LooksLikeToken(token) {
		return "", 0, invalid(field, "not a token")
	}
	if format.IsVolatileToken(token) {
		return v.openVolatile(ctx, field, token, purpose, v.vol.opts.Peers) // volatile.go
	}
	rec, key, err := v.recordAndKey(ctx, token) // keys.go
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
	c, err := v.keysOfRecord(ctx, rec, key, reveal)
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
	if err := v.checkHeld(ctx, c, field, purpose); err != nil {
		if errors.Is(err, ErrErased) {
			err = &FieldError{Field: field, Reason: "the token's subject has been erased (its hold has ended)", Err: ErrErased}
		}
		return "", 0, err
	}
	if err := v.checkConsent(ctx, field, purpose, c); err != nil {
		return "", 0, err
	}
	// The expiry was checked above, before the record was authenticated:
	// an expiry edited in the store makes this fail (RecordAADv2).
	plain, err := openRecord(c.keys, c.subject, rec)
	if err != nil {
		return "", 0, err
	}
	return plain, rec.Kind, nil
}
