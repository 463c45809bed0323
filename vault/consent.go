package vault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// Consent per purpose (README, "Consent per purpose").
//
// Which purposes rest on consent is the deployment's declaration
// ([Options.ConsentRequired]: the policy file's purposes map, or the
// config list without one). A reveal for such a purpose needs the
// subject's latest consent record for it to be a grant; otherwise the
// item fails with [ErrNoConsent], naming the purpose. Other purposes are
// unaffected.
//
// Decisions:
//   - The history is sealed under a key derived from the subject's data
//     key and kept under its key id ([ConsentStore]): the crypto-shred
//     makes it unreadable at once and the purge deletes it, so consent is
//     erased with the subject. A later key of the same subject starts a
//     new, empty history.
//   - Granting or withdrawing consent for a subject the vault holds no
//     key for creates the key (as Tokenize would): consent is usually
//     given before there is data, and the record must already hold then.
//   - The check reads the store on every reveal, never a cache: a
//     withdrawal on one server must hold at once on every server sharing
//     the store (one read of a fixed key; the subject's key is already in
//     hand).
//   - Mask, Tokenize, Encrypt, export and erasure need no consent: they
//     reveal nothing to the caller, or serve the subject's own rights.

// ConsentRecord is one grant or withdrawal.
type ConsentRecord struct {
	Purpose string
	Granted bool
	At      time.Time
	Source  string // where it was given or withdrawn, as the caller said
}

// ErrNoConsent: the reveal's purpose is consent-based and the subject has
// not consented to it (never, or withdrawn). A FailedPrecondition.
var ErrNoConsent = fmt.Errorf("%w: no consent for the purpose", ErrFailedPrecondition)

const (
	labelConsent   = "tokenvault/v1/consent"
	consentVersion = 1
	consentPage    = 500
)

// GrantConsent records subject's consent to purpose, given at source.
func (v *Vault) GrantConsent(ctx context.Context, subject, purpose, source string) (ConsentRecord, error) {
	return v.setConsent(ctx, subject, purpose, source, true)
}

// WithdrawConsent records the withdrawal of subject's consent to purpose.
// It takes effect for every reveal that reads the store after it returns.
func (v *Vault) WithdrawConsent(ctx context.Context, subject, purpose, source string) (ConsentRecord, error) {
	return v.setConsent(ctx, subject, purpose, source, false)
}

func (v *Vault) setConsent(ctx context.Context, subject, purpose, source string, granted bool) (ConsentRecord, error) {
	if err := checkNewSubject(subject); err != nil {
		return ConsentRecord{}, err
	}
	p, err := Purpose(purpose)
	if err != nil {
		return ConsentRecord{}, err
	}
	if !v.consentRequired(p) {
		return ConsentRecord{}, invalid("purpose", "not a consent-based purpose (declare it \"consent\" in the policy's purposes, or consent.purposes without a policy)")
	}
	if err := checkID("source", source); err != nil {
		return ConsentRecord{}, err
	}
	cs, err := capability[ConsentStore](v, "consent records")
	if err != nil {
		return ConsentRecord{}, err
	}
	c, err := v.keysFor(ctx, subject, true)
	if err != nil {
		return ConsentRecord{}, err
	}
	defer c.release()
	r := ConsentRecord{Purpose: p, Granted: granted, At: v.now().UTC(), Source: source}
	e, err := sealConsent(c.keys, c.id, r)
	if err != nil {
		return ConsentRecord{}, err
	}
	err = cs.AppendConsent(ctx, subject, c.id, e)
	if errors.Is(err, ErrErased) {
		return ConsentRecord{}, &FieldError{Field: "subject_id", Reason: "the subject was erased meanwhile", Err: ErrErased}
	}
	if err != nil {
		return ConsentRecord{}, fmt.Errorf("storing the consent record: %w", err)
	}
	return r, nil
}

func (v *Vault) consentRequired(purpose string) bool {
	return v.consent != nil && v.consent(purpose)
}

// checkConsent is the reveal's check: nil unless purpose is consent-based
// and the latest record of the subject (keys c) for it is not a grant.
func (v *Vault) checkConsent(ctx context.Context, field, purpose string, c cached) error {
	if !v.consentRequired(purpose) {
		return nil
	}
	noConsent := func(why string) error {
		// The purpose is the caller's own, and names no data.
		return &FieldError{Field: field, Err: ErrNoConsent,
			Reason: fmt.Sprintf("purpose %q rests on consent, and the subject %s (GrantConsent)", clip(purpose), why)}
	}
	cs, ok := v.store.(ConsentStore)
	if !ok {
		return noConsent("has no consent record (the store keeps none)")
	}
	if subject, _, held := SplitHoldSubject(c.subject); held {
		// Held data is the subject's: its consent is recorded under the
		// subject's own key (gone once the subject is erased: no consent).
		rc, err := v.keysFor(ctx, subject, false)
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrErased) {
			return noConsent("has no consent record (erased)")
		}
		if err != nil {
			return err
		}
		defer rc.release()
		c = rc
	}
	ck, err := consentKey(c.keys)
	if err != nil {
		return err
	}
	defer ck.Zero()
	tag, err := ck.MAC([]byte("purpose"), []byte(purpose))
	if err != nil {
		return err
	}
	e, err := cs.LatestConsent(ctx, c.id, tag)
	if errors.Is(err, ErrNotFound) {
		return noConsent("has not consented")
	}
	if err != nil {
		return fmt.Errorf("reading consent: %w", err)
	}
	r, err := openConsent(ck, c.id, e)
	if err != nil {
		return err
	}
	if r.Purpose != purpose {
		return fmt.Errorf("%w: consent entry under another purpose's tag", ErrCorrupt)
	}
	if !r.Granted {
		return noConsent("withdrew consent")
	}
	return nil
}

// consentHistory reads the history under c's key, oldest first (nil if
// the store keeps none).
func (v *Vault) consentHistory(ctx context.Context, c cached) ([]ConsentRecord, error) {
	cs, ok := v.store.(ConsentStore)
	if !ok {
		return nil, nil
	}
	ck, err := consentKey(c.keys)
	if err != nil {
		return nil, err
	}
	defer ck.Zero()
	var out []ConsentRecord
	for after := uint64(0); ; after += consentPage {
		page, err := cs.ConsentHistory(ctx, c.id, after, consentPage)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			r, err := openConsent(ck, c.id, e)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		if len(page) < consentPage {
			return out, nil
		}
	}
}

// consentKey derives the subject's consent key from its record key (an
// HKDF of an HKDF output: independent of every other subkey, and gone
// with the data key). The caller zeroes it.
func consentKey(ks *subjectKeys) (*aead.Key, error) { return ks.record.Derive(labelConsent) }

// Entry plaintext: version | granted | at (unix ns, 8) | len(purpose) (2) |
// purpose | source. Associated data: label, key id, tag.
func sealConsent(ks *subjectKeys, id KeyID, r ConsentRecord) (ConsentEntry, error) {
	ck, err := consentKey(ks)
	if err != nil {
		return ConsentEntry{}, err
	}
	defer ck.Zero()
	tag, err := ck.MAC([]byte("purpose"), []byte(r.Purpose))
	if err != nil {
		return ConsentEntry{}, err
	}
	b := []byte{consentVersion, 0}
	if r.Granted {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Purpose)))
	b = append(b, r.Purpose...)
	b = append(b, r.Source...)
	sealed, err := ck.Seal(nil, b, consentAAD(id, tag))
	clear(b)
	return ConsentEntry{Tag: tag, Sealed: sealed}, err
}

func openConsent(ck *aead.Key, id KeyID, e ConsentEntry) (ConsentRecord, error) {
	b, err := ck.Open(nil, e.Sealed, consentAAD(id, e.Tag))
	if err != nil {
		return ConsentRecord{}, fmt.Errorf("%w: consent entry: %w", ErrCorrupt, err)
	}
	const head = 2 + 8 + 2
	bad := fmt.Errorf("%w: consent entry", ErrCorrupt)
	if len(b) < head || b[0] != consentVersion || b[1] > 1 {
		return ConsentRecord{}, bad
	}
	n := int(binary.BigEndian.Uint16(b[10:]))
	if len(b) < head+n {
		return ConsentRecord{}, bad
	}
	return ConsentRecord{Granted: b[1] == 1, At: time.Unix(0, int64(binary.BigEndian.Uint64(b[2:]))).UTC(),
		Purpose: string(b[head : head+n]), Source: string(b[head+n:])}, nil
}

func consentAAD(id KeyID, tag []byte) []byte {
	a := append([]byte(labelConsent), id[:]...)
	return append(a, tag...)
}

// clip bounds a caller's text quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
