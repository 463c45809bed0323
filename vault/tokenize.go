package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/vault/format"
)

// Field is one value to tokenize.
type Field struct {
	Kind  format.Kind
	Value string
	// Deterministic: the same subject, kind and value give the same token.
	Deterministic bool
	// ChecksumValid: see [format.Options].
	ChecksumValid bool
	// Reveals, for a volatile field (format.CardSecurityCode), is how
	// often its token may be revealed; zero means the configured default
	// (VolatileOptions.Reveals). Other kinds must leave it zero.
	Reveals int
	// TTL is the token's retention: after it the token is never revealed
	// and is purged. Zero means the kind's default (RightsOptions), which
	// may be no expiry. A deterministic token that already exists keeps
	// its own expiry.
	TTL time.Duration
	// Hold puts the value under a configured hold class (holds.go): it
	// is then kept after the subject's erasure until the hold ends. ""
	// is none. Every field of one call must have the same Hold.
	Hold string
}

// maxRegenerations bounds how often one field's token is redrawn after
// collisions before the token space counts as exhausted.
const maxRegenerations = 32

// pending is one field of a Tokenize call on its way to a token.
type pending struct {
	i      int // index in the call's fields
	field  Field
	norm   string        // the normalized value
	ttl    time.Duration // the retention of a new token
	lookup []byte        // deterministic lookup key; nil for random tokens
	// same is an earlier field of the call with the same lookup key: this
	// field gets its token.
	same  *pending
	token string // the answer, once known
	rec   Record // the drawn record, until it is stored
	draws int    // tokens drawn for rec so far
}

// Tokenize stores fields for subject and returns one token per field, in
// order. All fields are stored in one synced transaction, or none.
//
// It runs in phases over one slice of pending fields: check every field;
// refuse a value that is itself a live token (refuseTokens); find the
// deterministic tokens that already exist; draw a token for
// every other field; store the drawn records, redrawing one that collides
// with a stored token, until the batch goes in.
func (v *Vault) Tokenize(ctx context.Context, subject string, fields []Field) ([]string, error) {
	if err := checkNewSubject(subject); err != nil {
		return nil, err
	}
	if err := checkBatch("fields", len(fields)); err != nil {
		return nil, err
	}
	all, err := v.checkFields(fields)
	if err != nil {
		return nil, err
	}
	// Before keysFor: a refused call makes no subject key.
	if err := v.refuseTokens(ctx, all); err != nil {
		return nil, err
	}
	hold, err := tokenizeHold(fields)
	if err != nil {
		return nil, err
	}
	for _, p := range all {
		if isVolatile(p.field.Kind) {
			if hold != "" {
				// A security code is never stored, so nothing of it can
				// outlive an erasure under a hold.
				return nil, invalid("fields[0].options.hold", "a card security code cannot be held (it is volatile)")
			}
			return v.tokenizeVolatile(ctx, subject, all) // volatile.go
		}
	}
	keySubject, err := v.holdKeySubject(ctx, "fields[0].options.hold", subject, hold)
	if err != nil {
		return nil, err
	}
	return v.tokenizeChecked(ctx, keySubject, all)
}

// tokenizeChecked tokenizes fields that passed every check: the subject's
// keys, existing deterministic tokens, new draws, one durable store.
func (v *Vault) tokenizeChecked(ctx context.Context, subject string, all []*pending) ([]string, error) {
	c, err := v.keysFor(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	defer c.release()
	fresh, err := v.findExisting(ctx, c, all)
	if err != nil {
		return nil, err
	}
	for _, p := range fresh {
		if err := v.draw(c, subject, p); err != nil {
			return nil, err
		}
	}
	if err := v.storeDrawn(ctx, c, subject, fresh); err != nil {
		return nil, err
	}
	tokens := make([]string, len(all))
	for i, p := range all {
		if p.same != nil {
			p = p.same
		}
		tokens[i] = p.token
	}
	return tokens, nil
}

// checkFields validates and normalizes every field before anything is
// read or written.
func (v *Vault) checkFields(fields []Field) ([]*pending, error) {
	all := make([]*pending, len(fields))
	ps := make([]pending, len(fields)) // one allocation for the call, not one per field
	for i, f := range fields {
		// Field names are built only for an error (four allocations per
		// field otherwise).
		name := func(part string) string { return item("fields", i) + part }
		if !f.Kind.Valid() {
			return nil, invalid(name(".kind"), "unknown or unspecified kind")
		}
		var ttl time.Duration
		var err error
		switch {
		case isVolatile(f.Kind):
			ttl, err = v.checkVolatileField(item("fields", i), f)
		case f.Reveals != 0:
			err = invalid(name(".reveals"), "only card security codes (volatile tokens) have a number of reveals")
		default:
			ttl, err = v.ttlFor("", f.Kind, f.TTL)
		}
		if err != nil {
			return nil, named(err, name(".options.ttl"))
		}
		if err := v.checkHold("", f.Hold); err != nil {
			return nil, named(err, name(".options.hold"))
		}
		norm, err := normalize("", f.Kind, f.Value)
		if err != nil {
			return nil, named(err, name(".value"))
		}
		ps[i] = pending{i: i, field: f, norm: norm, ttl: ttl}
		all[i] = &ps[i]
	}
	return all, nil
}

// named gives err, a *FieldError made without its field's name, the name.
func named(err error, field string) error {
	if fe, ok := err.(*FieldError); ok && fe.Field == "" {
		fe.Field = field
	}
	return err
}

// refuseTokens fails with ErrFailedPrecondition, naming the field, if the
// value of a field is a live (stored, unexpired) token of this vault, of
// any kind and subject: as given (trimmed) or as normalized, since the
// normal form of one kind's token may be another kind's value ("912-34-
// 5678" is an SSN token; as a bank account it becomes "912345678"). A
// token tokenized again would be a token standing for a token: it reveals
// a token, not the value, and outlives the erasure of the value's subject.
//
// It costs one store read per field (two when normalizing changed the
// value), in one read transaction when the store has [RecordBatchStore];
// the badger store answers most of them from its token filter.
// What the refusal tells a caller who may tokenize is only that a string
// is a live token, never whose or of what, and Mask tells as much.
func (v *Vault) refuseTokens(ctx context.Context, all []*pending) error {
	if rb, ok := v.store.(RecordBatchStore); ok {
		return v.refuseTokensBatch(ctx, rb, all)
	}
	for _, p := range all {
		live, err := v.isTokenValue(ctx, p.field.Value, p.norm)
		if err != nil {
			return err
		}
		if live {
			return &FieldError{Field: item("fields", p.i) + ".value", Err: ErrFailedPrecondition,
				Reason: "the value is a token of this vault: tokenize the original value, not its token"}
		}
	}
	return nil
}

// isTokenValue reports whether a value is a live token of this vault, as
// given (trimmed) or as normalized (norm): the check of refuseTokens for
// one value, which Rectify makes too.
func (v *Vault) isTokenValue(ctx context.Context, given, norm string) (bool, error) {
	live, err := v.isLiveToken(ctx, norm)
	if given = strings.TrimSpace(given); err == nil && !live && given != norm {
		live, err = v.isLiveToken(ctx, given)
	}
	return live, err
}

// refuseTokensBatch is refuseTokens with one batched read: the same
// strings are checked, and the first field (in order) with a live token
// is refused.
func (v *Vault) refuseTokensBatch(ctx context.Context, rb RecordBatchStore, all []*pending) error {
	cands := make([]string, 0, len(all))
	owner := make([]int, 0, len(all)) // index in all of cands[i]
	first := -1                       // the first field with a live token
	for k, p := range all {
		// A volatile token is held in memory, not in the store.
		if given := strings.TrimSpace(p.field.Value); first < 0 && (format.IsVolatileToken(p.norm) && v.vol.live(p.norm) ||
			format.IsVolatileToken(given) && v.vol.live(given)) {
			first = k
		}
		if format.LooksLikeToken(p.norm) {
			cands, owner = append(cands, p.norm), append(owner, k)
		}
		if given := strings.TrimSpace(p.field.Value); given != p.norm && format.LooksLikeToken(given) {
			cands, owner = append(cands, given), append(owner, k)
		}
	}
	if len(cands) == 0 && first < 0 {
		return nil
	}
	now := v.now()
	err := rb.RecordsOf(ctx, cands, func(i int, r Record) error {
		if !expired(r, now) && (first < 0 || owner[i] < first) {
			first = owner[i]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checking whether a value is a token: %w", err)
	}
	if first >= 0 {
		return &FieldError{Field: item("fields", all[first].i) + ".value", Err: ErrFailedPrecondition,
			Reason: "the value is a token of this vault: tokenize the original value, not its token"}
	}
	return nil
}

// isLiveToken reports whether s is the token of a stored record that has
// not expired.
func (v *Vault) isLiveToken(ctx context.Context, s string) (bool, error) {
	if !format.LooksLikeToken(s) {
		return false, nil
	}
	if format.IsVolatileToken(s) {
		return v.vol.live(s), nil
	}
	rec, err := v.store.Record(ctx, s)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("checking whether a value is a token: %w", err)
	}
	return !expired(rec, v.now()), nil
}

// findExisting computes the lookup keys of deterministic fields and
// answers those whose value already has a live token, or repeats an
// earlier field of the call. It returns the fields that need a new token.
func (v *Vault) findExisting(ctx context.Context, c cached, all []*pending) ([]*pending, error) {
	first := map[string]*pending{} // by lookup key
	var looked []*pending          // the first field of each lookup key
	for _, p := range all {
		if !p.field.Deterministic {
			continue
		}
		var err error
		if p.lookup, err = c.keys.lookup.MAC([]byte{byte(p.field.Kind)}, []byte(p.norm)); err != nil {
			return nil, err
		}
		if q, ok := first[string(p.lookup)]; ok {
			p.same = q
			continue
		}
		first[string(p.lookup)] = p
		looked = append(looked, p)
	}
	if lb, ok := v.store.(LookupBatchStore); ok && len(looked) > 0 {
		if err := v.liveLookups(ctx, lb, c.id, looked); err != nil {
			return nil, err
		}
	} else {
		for _, p := range looked {
			tok, err := v.liveLookup(ctx, c.id, p.lookup)
			switch {
			case err == nil:
				p.token = tok
			case !errors.Is(err, ErrNotFound):
				return nil, err
			}
		}
	}
	fresh := make([]*pending, 0, len(all))
	for _, p := range all {
		if p.same == nil && p.token == "" {
			fresh = append(fresh, p)
		}
	}
	return fresh, nil
}

// liveLookups is liveLookup for every field of looked, in one read: a
// field whose lookup leads to a live record gets its token; an expired
// one is deleted (as liveLookup does), so its value gets a fresh token.
func (v *Vault) liveLookups(ctx context.Context, lb LookupBatchStore, id KeyID, looked []*pending) error {
	lookups := make([][]byte, len(looked))
	for i, p := range looked {
		lookups[i] = p.lookup
	}
	now := v.now()
	var gone []string // expired tokens
	err := lb.LookupsOf(ctx, id, lookups, func(i int, r Record) error {
		if expired(r, now) {
			gone = append(gone, r.Token)
		} else {
			looked[i].token = r.Token
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, tok := range gone {
		if err := v.deleteExpired(ctx, tok); err != nil {
			return err
		}
	}
	return nil
}

// draw gives p a newly drawn token, sealed into p.rec. It is ErrExhausted
// once the field has had maxRegenerations redraws.
func (v *Vault) draw(c cached, subject string, p *pending) error {
	if p.draws > maxRegenerations {
		return &FieldError{Field: item("fields", p.i) + ".value", Err: ErrExhausted, Reason: exhaustedReason(p.field.Kind)}
	}
	p.draws++
	var err error
	p.rec, err = v.newRecord(c.keys, c.id, subject, p.i, p.field, p.norm, p.lookup, p.ttl)
	return err
}

// storeDrawn stores the records of fresh in one batch. A collision fails
// the whole batch, for one record: if its token is taken it is redrawn,
// if its lookup key is taken (a concurrent deterministic tokenize of the
// same value won) it takes the winner's token and leaves the batch; then
// the batch is stored again.
func (v *Vault) storeDrawn(ctx context.Context, c cached, subject string, fresh []*pending) error {
	for len(fresh) > 0 {
		recs := make([]Record, len(fresh))
		for k, p := range fresh {
			recs[k] = p.rec
		}
		err := v.store.PutRecords(ctx, subject, c.id, recs)
		var ce *CollisionError
		switch {
		case err == nil:
			for _, p := range fresh {
				p.token = p.rec.Token
			}
			v.tokensCreated.Add(int64(len(fresh)))
			v.tokens.Add(int64(len(fresh)))
			return nil
		case errors.As(err, &ce) && ce.Index >= 0 && ce.Index < len(fresh):
			p := fresh[ce.Index]
			if !ce.Lookup {
				if err := v.draw(c, subject, p); err != nil {
					return err
				}
				continue
			}
			if p.token, err = v.store.Lookup(ctx, c.id, p.lookup); err != nil {
				return err
			}
			fresh = slices.Delete(fresh, ce.Index, ce.Index+1)
		case errors.Is(err, ErrErased):
			return &FieldError{Field: "subject_id", Reason: "subject was erased while tokenizing", Err: ErrErased}
		default:
			return fmt.Errorf("storing tokens: %w", err)
		}
	}
	return nil
}

// exhaustedReason says why no token was found for a value of kind k,
// without the value: every value whose token keeps the same parts draws
// from one set of tokens (FORMATS.md, "Token spaces"), and tokens are
// unique across every kind and subject, so tokens of other kinds with
// the same characters take from that set too.
func exhaustedReason(k format.Kind) string {
	return fmt.Sprintf("no free token: all %d tokens drawn were taken; this value's tokens are shared by every %s, and no token is repeated across kinds and subjects",
		maxRegenerations+1, tokenSharers[k])
}

// tokenSharers says, per kind, which values draw from the same tokens (the
// "Shared by" column of FORMATS.md, "Token spaces").
var tokenSharers = map[format.Kind]string{
	format.PAN:          "card number of the same length with the same first 6 and last 4 digits",
	format.SSN:          "SSN with the same last 4 digits",
	format.CNResidentID: "resident ID of the same province",
	format.NationalID:   "national ID with the same layout of letters, digits and separators",
	format.Phone:        "phone number with the same country code, length and last 2 digits",
	format.Email:        "e-mail address with the same domain and the same layout of its local part",
	format.IBAN:         "IBAN of the same country with the same BBAN layout",
	format.BankAccount:  "account number of the same length with the same last 4 digits",
	format.Address:      "address with the same layout",
	format.Name:         "name with the same word lengths and punctuation",
	format.Generic:      "value with the same layout",
	// Opaque tokens, drawn from 2^80 (expiry) and 2^130 (codes) strings.
	format.CardSecurityCode: "card security code",
	format.CardExpiry:       "card expiry date",
}

func normalize(field string, k format.Kind, value string) (string, error) {
	n, err := format.Normalize(k, value)
	if err != nil {
		// format errors never contain the value, so they are safe to pass on.
		return "", &FieldError{Field: field, Reason: err.Error(), Err: ErrInvalidArgument}
	}
	return n, nil
}

// liveLookup returns the deterministic token stored under lookup, unless
// it has expired: an expired token is deleted (as the purge would) so the
// value gets a fresh one, never a token that can no longer be revealed.
func (v *Vault) liveLookup(ctx context.Context, id KeyID, lookup []byte) (string, error) {
	tok, err := v.store.Lookup(ctx, id, lookup)
	if err != nil {
		return "", err
	}
	rec, err := v.store.Record(ctx, tok)
	if err != nil {
		return "", err
	}
	if !expired(rec, v.now()) {
		return tok, nil
	}
	if err := v.deleteExpired(ctx, tok); err != nil {
		return "", err
	}
	return "", ErrNotFound
}

// deleteExpired deletes the record of an expired deterministic token (as
// the purge would), so that its value gets a fresh token, and counts it out
// of the tokens stored. A record deleted meanwhile is not an error.
func (v *Vault) deleteExpired(ctx context.Context, tok string) error {
	err := v.store.DeleteRecord(ctx, tok)
	switch {
	case err == nil:
		v.tokens.Add(-1)
	case !errors.Is(err, ErrNotFound):
		return err
	}
	return nil
}

func (v *Vault) newRecord(keys *subjectKeys, id KeyID, subject string, i int, f Field, norm string, lookup []byte, ttl time.Duration) (Record, error) {
	tok, err := format.Token(f.Kind, norm, format.Options{ChecksumValid: f.ChecksumValid}, v.rand)
	if errors.Is(err, format.ErrInvalidValue) {
		return Record{}, &FieldError{Field: item("fields", i) + ".value", Reason: err.Error(), Err: ErrInvalidArgument}
	}
	if err != nil {
		return Record{}, fmt.Errorf("making token: %w", err)
	}
	// Times are kept to the microsecond, in the record and in its
	// associated data alike, so that a store that keeps no finer times
	// (PostgreSQL, say) still returns what was sealed.
	r := Record{Token: tok, KeyID: id, Kind: f.Kind, Created: v.now().UTC().Truncate(time.Microsecond), Lookup: lookup}
	if ttl > 0 {
		r.Expires = r.Created.Add(ttl).Truncate(time.Microsecond)
	}
	err = sealRecord(keys, subject, &r, norm)
	return r, err
}
