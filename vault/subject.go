package vault

import (
	"bytes"
	"context"
	"errors"

	"time"

	"github.com/tokenvault/tokenvault/vault/format"
)

// Listing a subject without revealing it: what the privacy console
// (internal/console) shows on a subject's page before anyone reveals
// anything. Values stay sealed; masked values come from Mask.

// SubjectInfo describes a subject the vault holds a key for.
type SubjectInfo struct {
	KeyCreated time.Time
	Restricted time.Time // zero: not restricted
}

// TokenInfo is one token of a subject, without its value.
type TokenInfo struct {
	Token         string
	Kind          format.Kind
	Created       time.Time
	Expires       time.Time // zero: no expiry
	Deterministic bool
	// Cursor, passed as SubjectTokens' after, lists the tokens after
	// this one (store-defined; see Record.Cursor).
	Cursor string
}

// MaxTokenPage bounds one page of SubjectTokens.
const MaxTokenPage = 500

// SubjectTokens lists up to limit (at most MaxTokenPage) unexpired tokens
// of subject after the cursor after ("" from the start; pass the Cursor
// of the previous page's last token), in the store's order, and whether more
// follow. ErrNotFound if the vault holds no key for
// subject (see ErasedAt for whether it was erased). Nothing is unsealed.
// Tokens of kinds the caller may not see (kindAllowed) are left out.
func (v *Vault) SubjectTokens(ctx context.Context, subject, after string, limit int) (SubjectInfo, []TokenInfo, bool, error) {
	if err := checkID("subject_id", subject); err != nil {
		return SubjectInfo{}, nil, false, err
	}
	if limit <= 0 || limit > MaxTokenPage {
		return SubjectInfo{}, nil, false, invalid("limit", "must be 1 to %d", MaxTokenPage)
	}
	rs, err := capability[RightsStore](v, "listing a subject's tokens")
	if err != nil {
		return SubjectInfo{}, nil, false, err
	}
	sk, err := v.store.SubjectKey(ctx, subject)
	if errors.Is(err, ErrNotFound) {
		return SubjectInfo{}, nil, false, &FieldError{Field: "subject_id", Reason: "no data is held for this subject", Err: ErrNotFound}
	}
	if err != nil {
		return SubjectInfo{}, nil, false, err
	}
	info := SubjectInfo{KeyCreated: sk.Created, Restricted: sk.Restricted}
	var out []TokenInfo
	now := v.now()
	// One record more than asked tells whether more follow; expired
	// records are skipped, so a page may take more than one read.
	for {
		n := limit + 1 - len(out)
		page, err := rs.KeyRecords(ctx, sk.ID, after, n)
		if err != nil {
			return info, nil, false, err
		}
		for _, rec := range page {
			// Kinds the caller's permission excludes are not listed (the
			// listing is a Mask call's: ctx carries its kind filter).
			if expired(rec, now) || !kindAllowed(ctx, rec.Kind) {
				continue
			}
			if len(out) == limit {
				return info, out, true, nil
			}
			out = append(out, TokenInfo{Token: rec.Token, Kind: rec.Kind, Created: rec.Created,
				Expires: rec.Expires, Deterministic: rec.Lookup != nil, Cursor: rec.Cursor})
		}
		if len(page) < n {
			return info, out, false, nil
		}
		after = page[len(page)-1].Cursor
	}
}

// ErasedAt is when subject was erased, from the erasure ledger (zero: the
// ledger has no entry for it, or the vault keeps no ledger). The ledger
// holds keyed hashes only, so this answers for one given id and cannot
// list who was erased.
func (v *Vault) ErasedAt(ctx context.Context, subject string) (time.Time, error) {
	if err := checkID("subject_id", subject); err != nil {
		return time.Time{}, err
	}
	if v.rights.LedgerKey == nil {
		return time.Time{}, nil
	}
	ls, err := capability[LedgerStore](v, "reading the erasure ledger")
	if err != nil {
		return time.Time{}, err
	}
	h, err := LedgerHash(v.rights.LedgerKey, subject)
	if err != nil {
		return time.Time{}, err
	}
	// The listing starts after a cursor: start from the hash just below
	// h (hashes all have the same length), so h comes first if present.
	entries, err := ls.LedgerEntries(ctx, predecessor(h), 1)
	if err != nil {
		return time.Time{}, err
	}
	if len(entries) == 1 && bytes.Equal(entries[0].Hash, h) {
		return entries[0].ErasedAt, nil
	}
	return time.Time{}, nil
}

// predecessor is the byte string of b's length just below b (nil for all
// zeros: list from the start).
func predecessor(b []byte) []byte {
	p := bytes.Clone(b)
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] > 0 {
			p[i]--
			return p
		}
		p[i] = 0xff
	}
	return nil
}
