package vault

import (
	"context"
	"errors"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/envelope"
)

// EncryptItem is one value to encrypt.
type EncryptItem struct {
	Plaintext []byte
	// Context names where the blob will be kept (e.g.
	// "orders.shipping_address"); decrypting needs the same context.
	Context string
	// Hold puts the blob under a configured hold class (holds.go): it is
	// sealed under the subject's hold key of that class. "" is none.
	Hold string
}

// Encrypt seals items under subject's blob key. Blobs (see crypto/envelope)
// are bound to subject and context and die with the subject's key.
func (v *Vault) Encrypt(ctx context.Context, subject string, items []EncryptItem) ([][]byte, error) {
	if err := checkNewSubject(subject); err != nil {
		return nil, err
	}
	if err := checkBatch("items", len(items)); err != nil {
		return nil, err
	}
	for i, it := range items {
		if len(it.Plaintext) > MaxValueBytes {
			return nil, invalid(item("items", i)+".plaintext", "larger than %d bytes", MaxValueBytes)
		}
		if err := checkNewContext(item("items", i)+".context", it.Context); err != nil {
			return nil, err
		}
		if err := v.checkHold(item("items", i)+".hold", it.Hold); err != nil {
			return nil, err
		}
	}
	// One key per hold class of the call ("" the subject's own).
	keys := map[string]cached{}
	defer func() {
		for _, c := range keys {
			c.release()
		}
	}()
	out := make([][]byte, len(items))
	for i, it := range items {
		c, ok := keys[it.Hold]
		if !ok {
			keySubject, err := v.holdKeySubject(ctx, item("items", i)+".hold", subject, it.Hold)
			if err != nil {
				return nil, err
			}
			if c, err = v.keysFor(ctx, keySubject, true); err != nil {
				return nil, err
			}
			keys[it.Hold] = c
		}
		bl := envelope.Blob{KeyID: c.id}
		var err error
		if bl.Sealed, err = c.keys.blob.Seal(nil, it.Plaintext, envelope.AAD(c.id, c.subject, it.Context)); err != nil {
			return nil, err
		}
		out[i] = bl.Marshal(nil)
	}
	return out, nil
}

// DecryptItem is one blob to decrypt.
type DecryptItem struct {
	Blob    []byte
	Context string
}

// Decrypted is the outcome for one blob; Err is per item.
type Decrypted struct {
	Plaintext []byte
	// Subject is the blob's subject. It is also set for a refused item
	// whose subject was found (restricted, held, without consent, failed
	// authentication), for the audit record only: a caller that was
	// refused must not be told whose blob it holds.
	Subject string
	Err     error
}

// Decrypt opens blobs made by Encrypt. One bad blob fails only its item.
func (v *Vault) Decrypt(ctx context.Context, items []DecryptItem, purpose string) ([]Decrypted, error) {
	p, err := Purpose(purpose)
	if err != nil {
		return nil, err
	}
	if err := checkBatch("items", len(items)); err != nil {
		return nil, err
	}
	out := make([]Decrypted, len(items))
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = v.decryptOne(ctx, item("items", i), it, p)
	}
	return out, nil
}

func (v *Vault) decryptOne(ctx context.Context, field string, it DecryptItem, purpose string) Decrypted {
	if err := checkText(field+".context", it.Context); err != nil {
		return Decrypted{Err: err}
	}
	if !contextAllowed(ctx, it.Context) {
		return Decrypted{Err: deniedContext(field + ".context")}
	}
	bl, err := envelope.Parse(it.Blob)
	if err != nil {
		return Decrypted{Err: invalid(field+".blob", "%v", err)}
	}
	c, err := v.keysByID(ctx, bl.KeyID, true)
	if errors.Is(err, ErrErased) {
		return Decrypted{Err: &FieldError{Field: field + ".blob", Err: ErrNotFound,
			Reason: "no key for this blob: its subject was erased, or the blob is not from this vault"}}
	}
	if re := (*restrictedError)(nil); errors.As(err, &re) {
		return Decrypted{Subject: realSubject(re.subject), Err: &FieldError{Field: field + ".blob", Err: ErrRestricted,
			Reason: "processing of the blob's subject is restricted (RestrictSubject): it is not decrypted until the restriction is lifted"}}
	}
	if err != nil {
		return Decrypted{Err: err}
	}
	defer c.release()
	// From here the blob's subject is known: a refusal names it too (for
	// the audit record; see Decrypted).
	subject := realSubject(c.subject)
	if err := v.checkHeld(ctx, c, field, purpose); err != nil {
		if errors.Is(err, ErrErased) {
			err = &FieldError{Field: field + ".blob", Err: ErrNotFound, Reason: "no key for this blob: its subject was erased and its hold has ended"}
		}
		return Decrypted{Subject: subject, Err: err}
	}
	if err := v.checkConsent(ctx, field+".blob", purpose, c); err != nil {
		return Decrypted{Subject: subject, Err: err}
	}
	plain, err := c.keys.blob.Open(nil, bl.Sealed, envelope.AAD(bl.KeyID, c.subject, it.Context))
	if errors.Is(err, aead.ErrDecrypt) {
		// Also under the subject: a wrong context or an altered blob of
		// theirs is an attempt on their data.
		return Decrypted{Subject: subject, Err: invalid(field+".blob", "authentication failed: wrong context, or the blob was altered")}
	}
	if err != nil {
		return Decrypted{Subject: subject, Err: err}
	}
	return Decrypted{Plaintext: plain, Subject: subject}
}
