package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Data-subject rights: access and portability (ExportSubject),
// rectification (Rectify), restriction of processing (RestrictSubject),
// retention (token expiry, PurgeExpired), and proof of erasure (signed
// receipts and the erasure ledger, see EraseSubject).
//
// Decisions, documented in the README:
//   - Restriction blocks revealing values (Detokenize, Decrypt) and nothing
//     else: Mask shows no value; Tokenize and Encrypt only store (storage
//     stays lawful under restriction, GDPR art. 18(2)); Rectify is what a
//     restriction often waits for (art. 18(1)(a)); ExportSubject serves the
//     right of access, which a restriction does not suspend; erasure must
//     always work.
//   - An expired token is NotFound (ErrExpired) on every path, exactly as
//     after the background purge removed it; export leaves it out.
//   - Rectifying a deterministic token to a value that already has another
//     deterministic token of the same subject and kind keeps that other
//     token as the lookup target; the rectified token keeps its (new) value
//     but leaves deterministic lookups (Rectified.Deterministic false).

// RightsOptions configure data-subject rights. The zero value disables
// the ledger and receipt signatures (tests of other things); the server
// always sets them.
type RightsOptions struct {
	// LedgerKey keys the erasure ledger's hashes of subject ids. Without
	// it erasures are not entered in the ledger, and a restore could not
	// re-erase them.
	LedgerKey *aead.Key
	// ReceiptKey signs erasure receipts.
	ReceiptKey ed25519.PrivateKey
	// BackupHorizon is the KEK rotation interval plus the backup
	// retention: by erasure time + BackupHorizon no backup copy of the
	// subject's data key can be unwrapped any more.
	BackupHorizon time.Duration
	// DefaultTTL is the retention of new tokens per kind when the request
	// gives none (absent: no expiry).
	DefaultTTL map[format.Kind]time.Duration
}

// MaxTTL bounds a token's retention.
const MaxTTL = 100 * 365 * 24 * time.Hour

func (o RightsOptions) validate() error {
	if o.ReceiptKey != nil && len(o.ReceiptKey) != ed25519.PrivateKeySize {
		return errors.New("vault: receipt key is not an Ed25519 private key")
	}
	for k, d := range o.DefaultTTL {
		if !k.Valid() || d <= 0 || d > MaxTTL {
			return fmt.Errorf("vault: default retention for kind %v out of range", k)
		}
	}
	return nil
}

// ledgerHashLabel separates ledger hashes from every other MAC.
const ledgerHashLabel = "tokenvault/ledger/v1"

// LedgerHash is the erasure ledger's keyed hash of a subject id. Without
// the ledger key it cannot be computed, so the ledger does not reveal
// who was erased, even to someone who can guess ids.
func LedgerHash(key *aead.Key, subject string) ([]byte, error) {
	return key.MAC([]byte(ledgerHashLabel), []byte(subject))
}

// LedgerKeyID fingerprints a ledger key (16 hex digits), so that a ledger
// file is never applied with a key it was not made with: every hash would
// silently miss.
func LedgerKeyID(key *aead.Key) (string, error) {
	m, err := key.MAC([]byte("tokenvault/ledger/key-id"))
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(m[:8]), nil
}

func (v *Vault) ledgerEntry(subject string, at time.Time) (LedgerEntry, error) {
	if v.rights.LedgerKey == nil {
		return LedgerEntry{}, nil
	}
	h, err := LedgerHash(v.rights.LedgerKey, subject)
	return LedgerEntry{Hash: h, ErasedAt: at}, err
}

// sign completes r with the backup horizon and, with a receipt key, signs
// it and returns the signed receipt file.
func (v *Vault) sign(r receipt.Receipt) (receipt.Receipt, []byte) {
	if v.rights.BackupHorizon > 0 {
		r.BackupsUndecryptableBy = r.ErasedAt.Add(v.rights.BackupHorizon)
	}
	if v.rights.ReceiptKey == nil {
		return r, nil
	}
	r = receipt.Sign(r, v.rights.ReceiptKey)
	return r, r.Marshal()
}

// ReceiptPublicKey is the key that verifies erasure receipts (nil when
// receipts are not signed).
func (v *Vault) ReceiptPublicKey() ed25519.PublicKey {
	if v.rights.ReceiptKey == nil {
		return nil
	}
	return v.rights.ReceiptKey.Public().(ed25519.PublicKey)
}

// LedgerKeyID fingerprints the vault's ledger key ("" without one).
func (v *Vault) LedgerKeyID() (string, error) {
	if v.rights.LedgerKey == nil {
		return "", nil
	}
	return LedgerKeyID(v.rights.LedgerKey)
}

// ScanLedger calls fn with every page of the erasure ledger.
func (v *Vault) ScanLedger(ctx context.Context, fn func([]LedgerEntry) error) error {
	ls, err := capability[LedgerStore](v, "listing the erasure ledger")
	if err != nil {
		return err
	}
	return scanPages(ctx, ls.LedgerEntries, func(e LedgerEntry) []byte { return e.Hash }, fn)
}

// ExportHeader describes the subject of an export.
type ExportHeader struct {
	Subject string
	// KeyID is the subject's data key id. Field-encryption blobs live in
	// the callers' own databases, not in the vault; each carries this key
	// id (16 bytes at offset 2 of the blob, after its version and length bytes), which is how to find them.
	KeyID      KeyID
	KeyCreated time.Time
	Restricted time.Time // zero: not restricted
	// Consent is the subject's consent history, oldest first (consent.go).
	Consent []ConsentRecord
	// Holds are the subject's hold keys (holds.go). After the subject's
	// erasure its own key is gone (KeyID zero) and only these remain.
	Holds []ExportedHold
}

// ExportedRecord is one token and its value.
type ExportedRecord struct {
	Token         string
	Kind          format.Kind
	Value         string
	Created       time.Time
	Expires       time.Time // zero: no expiry
	Deterministic bool
	Hold          string // the hold class, "" for the subject's own data
}

// ExportSubject reveals every unexpired token and value held for subject
// (right of access and portability), calling fn once per page (at least
// once, possibly with no records). Allowed while the subject is
// restricted. Values under a hold key come after the subject's own, with
// ExportedRecord.Hold set, and the header lists the holds (also after the
// subject's erasure, while its held data is kept). ErrNotFound if the
// vault holds no key for subject.
func (v *Vault) ExportSubject(ctx context.Context, subject string, fn func(ExportHeader, []ExportedRecord) error) error {
	if err := checkID("subject_id", subject); err != nil {
		return err
	}
	rs, err := capability[RightsStore](v, "exporting a subject's data")
	if err != nil {
		return err
	}
	holds, holdKeys, err := v.subjectHolds(ctx, subject)
	if err != nil {
		return err
	}
	sk, err := v.store.SubjectKey(ctx, subject)
	if errors.Is(err, ErrNotFound) && len(holds) == 0 {
		return &FieldError{Field: "subject_id", Reason: "no data is held for this subject", Err: ErrNotFound}
	}
	h := ExportHeader{Subject: subject, Holds: holds}
	sent := false
	switch {
	case err == nil:
		h.KeyID, h.KeyCreated, h.Restricted = sk.ID, sk.Created, sk.Restricted
		if err := v.exportKey(ctx, rs, subject, sk, "", &h, fn, &sent); err != nil {
			return err
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}
	for i, hk := range holdKeys {
		if err := v.exportKey(ctx, rs, HoldSubject(subject, holds[i].Class), hk, holds[i].Class, &h, fn, &sent); err != nil {
			return err
		}
	}
	if !sent {
		return fn(h, nil)
	}
	return nil
}

// exportKey exports the records under one key of the subject (its own,
// or a hold key: keySubject is then the pseudo-subject and hold its class).
func (v *Vault) exportKey(ctx context.Context, rs RightsStore, keySubject string, sk SubjectKey, hold string,
	h *ExportHeader, fn func(ExportHeader, []ExportedRecord) error, sent *bool) error {
	gen := v.cache.generation()
	c, err := v.unwrap(ctx, keySubject, sk, gen)
	if err != nil {
		return err
	}
	defer c.release()
	if hold == "" { // the subject's own key holds its consent history
		if h.Consent, err = v.consentHistory(ctx, c); err != nil {
			return err
		}
	}
	after := ""
	for {
		page, err := rs.KeyRecords(ctx, sk.ID, after, scanPage)
		if err != nil {
			return err
		}
		out := make([]ExportedRecord, 0, len(page))
		now := v.now()
		for _, rec := range page {
			if expired(rec, now) {
				continue
			}
			if rec.KeyID != sk.ID {
				return fmt.Errorf("%w: record listed under another key", ErrCorrupt)
			}
			plain, err := openRecord(c.keys, keySubject, rec)
			if err != nil {
				return err
			}
			out = append(out, ExportedRecord{Token: rec.Token, Kind: rec.Kind, Value: plain,
				Created: rec.Created, Expires: rec.Expires, Deterministic: rec.Lookup != nil, Hold: hold})
		}
		if len(out) > 0 {
			if err := fn(*h, out); err != nil {
				return err
			}
			*sent = true
		}
		if len(page) < scanPage {
			return nil
		}
		after = page[len(page)-1].Cursor
	}
}

func expired(r Record, now time.Time) bool { return !r.Expires.IsZero() && !now.Before(r.Expires) }

// Rectified is the outcome of a rectification.
type Rectified struct {
	// Deterministic reports whether deterministic tokenization of the new
	// value yields this token (false for random tokens, and when another
	// token of the subject already held the new value; see the top of
	// this file).
	Deterministic bool
	// Subject is the token's subject (for the caller's audit record).
	Subject string
}

// Rectify replaces the value behind token (right to rectification). The
// token stays the same, so callers' references remain valid; its kind,
// creation and expiry are kept. A deterministic token's lookup moves from
// the old value to the new one.
func (v *Vault) Rectify(ctx context.Context, token, value string) (Rectified, error) {
	if !format.LooksLikeToken(token) {
		return Rectified{}, invalid("token", "not a token")
	}
	rs, err := capability[RightsStore](v, "rectifying tokens")
	if err != nil {
		return Rectified{}, err
	}
	rec, err := v.store.Record(ctx, token)
	if errors.Is(err, ErrNotFound) {
		return Rectified{}, &FieldError{Field: "token", Reason: unknownToken, Err: ErrNotFound}
	}
	if err != nil {
		return Rectified{}, err
	}
	if expired(rec, v.now()) {
		return Rectified{}, &FieldError{Field: "token", Reason: expiredToken, Err: ErrExpired}
	}
	norm, err := normalize("value", rec.Kind, value)
	if err != nil {
		return Rectified{}, err
	}
	// As Tokenize refuses it: a token standing for a token (another
	// subject's, or this one itself) would outlive the erasure of the
	// subject the token belongs to.
	if live, err := v.isTokenValue(ctx, value, norm); err != nil {
		return Rectified{}, err
	} else if live {
		return Rectified{}, &FieldError{Field: "value", Err: ErrFailedPrecondition,
			Reason: "the value is a token of this vault: rectify to the original value, not its token"}
	}
	// The token stays, so the parts of its value that it repeats must stay
	// too: a card token would otherwise go on showing (and routing by) the
	// replaced card's first 6 and last 4 digits. A value that differs there
	// is another value: it gets a token of its own.
	if format.Kept(rec.Kind, token) != format.Kept(rec.Kind, norm) {
		return Rectified{}, &FieldError{Field: "value", Err: ErrFailedPrecondition,
			Reason: "the new value does not match the token's kept parts (" + rec.Kind.String() +
				" tokens keep " + format.KeptParts(rec.Kind) + "): tokenize the new value instead"}
	}
	c, err := v.keysByID(ctx, rec.KeyID, false)
	if errors.Is(err, ErrErased) {
		return Rectified{}, &FieldError{Field: "token", Reason: "the token's subject has been erased", Err: ErrErased}
	}
	if err != nil {
		return Rectified{}, err
	}
	defer c.release()
	if err := v.checkHeld(ctx, c, "token", ""); errors.Is(err, ErrErased) { // a hold that has ended
		return Rectified{}, &FieldError{Field: "token", Reason: "the token's subject has been erased", Err: ErrErased}
	} else if err != nil {
		return Rectified{}, err
	}
	// The stored record must be authentic before it is resealed: the new
	// seal binds the creation and expiry kept from it, and would otherwise
	// launder an expiry edited in the store. (A RecordAADv1 record's
	// metadata is not authenticated; rectifying it binds what is there.)
	if rec.Token != token {
		return Rectified{}, fmt.Errorf("%w: record under another token", ErrCorrupt)
	}
	if _, err := openRecord(c.keys, c.subject, rec); err != nil {
		return Rectified{}, err
	}
	next := rec
	if rec.Lookup != nil {
		if next.Lookup, err = c.keys.lookup.MAC([]byte{byte(rec.Kind)}, []byte(norm)); err != nil {
			return Rectified{}, err
		}
	}
	if err := sealRecord(c.keys, c.subject, &next, norm); err != nil {
		return Rectified{}, err
	}
	err = rs.ReplaceRecord(ctx, c.subject, rec.KeyID, next)
	if errors.Is(err, ErrCollision) {
		// Another token of this subject is the deterministic token of the
		// new value: it keeps the lookup. The lookup key is bound, so the
		// value is sealed again without it.
		next.Lookup = nil
		if err := sealRecord(c.keys, c.subject, &next, norm); err != nil {
			return Rectified{}, err
		}
		err = rs.ReplaceRecord(ctx, c.subject, rec.KeyID, next)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return Rectified{}, &FieldError{Field: "token", Reason: unknownToken, Err: ErrNotFound}
	case errors.Is(err, ErrErased):
		return Rectified{}, &FieldError{Field: "token", Reason: "the token's subject was erased while rectifying", Err: ErrErased}
	case err != nil:
		return Rectified{}, fmt.Errorf("storing the rectified record: %w", err)
	}
	return Rectified{Deterministic: next.Lookup != nil, Subject: realSubject(c.subject)}, nil
}

const (
	unknownToken = "unknown token (never issued, expired, or its subject was erased)"
	expiredToken = "the token has expired (its retention period is over)"
)

// RestrictSubject restricts processing of subject: until
// UnrestrictSubject, its values are not revealed (Detokenize and Decrypt
// fail with FailedPrecondition); nothing is deleted. It returns when the
// restriction began (the earlier time if it was already restricted).
func (v *Vault) RestrictSubject(ctx context.Context, subject string) (time.Time, error) {
	if err := checkID("subject_id", subject); err != nil {
		return time.Time{}, err
	}
	rs, err := capability[RightsStore](v, "restricting processing")
	if err != nil {
		return time.Time{}, err
	}
	sk, err := v.store.SubjectKey(ctx, subject)
	now := v.now().UTC()
	since := now
	if err == nil && !sk.Restricted.IsZero() {
		since = sk.Restricted
	}
	// The subject's held data too (holds.go), with the same start.
	held, herr := v.restrictHolds(ctx, rs, subject, since)
	if herr != nil {
		return time.Time{}, herr
	}
	if err == nil && !sk.Restricted.IsZero() {
		return sk.Restricted, nil
	}
	if err == nil {
		err = rs.SetRestricted(ctx, subject, now)
		v.cache.invalidate(subject, KeyID{}) // even on error: it may have committed
	}
	if errors.Is(err, ErrNotFound) && held > 0 {
		return now, nil // only held data is left (erased)
	}
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, &FieldError{Field: "subject_id", Reason: "no data is held for this subject", Err: ErrNotFound}
	}
	return now, err
}

// UnrestrictSubject lifts a restriction (no-op if there is none).
func (v *Vault) UnrestrictSubject(ctx context.Context, subject string) error {
	if err := checkID("subject_id", subject); err != nil {
		return err
	}
	rs, err := capability[RightsStore](v, "restricting processing")
	if err != nil {
		return err
	}
	held, err := v.restrictHolds(ctx, rs, subject, time.Time{})
	if err != nil {
		return err
	}
	err = rs.SetRestricted(ctx, subject, time.Time{})
	v.cache.invalidate(subject, KeyID{}) // even on error: it may have committed
	if errors.Is(err, ErrNotFound) && held > 0 {
		return nil
	}
	if errors.Is(err, ErrNotFound) {
		return &FieldError{Field: "subject_id", Reason: "no data is held for this subject", Err: ErrNotFound}
	}
	return err
}

// PurgeExpired deletes every record whose retention is over and returns
// how many. The server runs it periodically.
func (v *Vault) PurgeExpired(ctx context.Context) (int64, error) {
	rs, err := capability[RightsStore](v, "token retention (purging expired tokens)")
	if err != nil {
		return 0, err
	}
	var total int64
	now := v.now()
	for {
		n, err := rs.PurgeExpired(ctx, now, purgePage)
		total += int64(n)
		v.tokens.Add(-int64(n))
		if err != nil || n < purgePage {
			return total, err
		}
	}
}

const purgePage = 500

// ttlFor is the retention of a new token of kind k.
func (v *Vault) ttlFor(field string, k format.Kind, ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl < 0 || ttl > MaxTTL:
		return 0, invalid(field, "must be between 0 (the kind's default) and %v", MaxTTL)
	case ttl > 0:
		return ttl, nil
	}
	return v.rights.DefaultTTL[k], nil
}
