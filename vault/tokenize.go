package vault

import (
	"context"
	"errors"
	"fmt"
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
	// TTL is the token's retention: after it the token is never revealed
	// and is purged. Zero means the kind's default (RightsOptions), which
	// may be no expiry. A deterministic token that already exists keeps
	// its own expiry.
	TTL time.Duration
}

// maxRegenerations bounds how often one field's token is redrawn after
// collisions before the token space counts as exhausted.
const maxRegenerations = 32

// Tokenize stores fields for subject and returns one token per field, in
// order. All fields are stored in one synced transaction, or none.
func (v *Vault) Tokenize(ctx context.Context, subject string, fields []Field) ([]string, error) {
	if err := checkID("subject_id", subject); err != nil {
		return nil, err
	}
	if err := checkBatch("fields", len(fields)); err != nil {
		return nil, err
	}
	norm := make([]string, len(fields))
	ttls := make([]time.Duration, len(fields))
	for i, f := range fields {
		if !f.Kind.Valid() {
			return nil, invalid(item("fields", i)+".kind", "unknown or unspecified kind")
		}
		ttl, err := v.ttlFor(item("fields", i)+".options.ttl", f.Kind, f.TTL)
		if err != nil {
			return nil, err
		}
		ttls[i] = ttl
		n, err := normalize(item("fields", i)+".value", f.Kind, f.Value)
		if err != nil {
			return nil, err
		}
		norm[i] = n
	}

	c, err := v.keysFor(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	defer c.release()

	tokens := make([]string, len(fields))
	recs := make([]Record, 0, len(fields))
	pending := make([]int, 0, len(fields)) // field index of each entry of recs
	dupOf := map[int]int{}                 // field -> earlier field with the same lookup
	seen := map[string]int{}
	for i, f := range fields {
		var lookup []byte
		if f.Deterministic {
			if lookup, err = c.keys.lookup.MAC([]byte{byte(f.Kind)}, []byte(norm[i])); err != nil {
				return nil, err
			}
			if j, ok := seen[string(lookup)]; ok {
				dupOf[i] = j
				continue
			}
			seen[string(lookup)] = i
			tok, err := v.liveLookup(ctx, c.id, lookup)
			if err == nil {
				tokens[i] = tok
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
		r, err := v.newRecord(c.keys, c.id, subject, i, f, norm[i], lookup, ttls[i])
		if err != nil {
			return nil, err
		}
		recs, pending = append(recs, r), append(pending, i)
	}

	regens := make([]int, len(recs))
	for len(recs) > 0 {
		err := v.store.PutRecords(ctx, subject, c.id, recs)
		var ce *CollisionError
		switch {
		case err == nil:
			for k, i := range pending {
				tokens[i] = recs[k].Token
			}
			v.tokensCreated.Add(int64(len(recs)))
			v.tokens.Add(int64(len(recs)))
			recs = nil
		case errors.As(err, &ce) && ce.Lookup:
			// A concurrent deterministic tokenize stored this value first:
			// use its token.
			i := pending[ce.Index]
			if tokens[i], err = v.store.Lookup(ctx, c.id, recs[ce.Index].Lookup); err != nil {
				return nil, err
			}
			recs = append(recs[:ce.Index], recs[ce.Index+1:]...)
			pending = append(pending[:ce.Index], pending[ce.Index+1:]...)
			regens = append(regens[:ce.Index], regens[ce.Index+1:]...)
		case errors.As(err, &ce):
			// The token is taken by another record: draw a new one.
			if regens[ce.Index]++; regens[ce.Index] > maxRegenerations {
				i := pending[ce.Index]
				return nil, &FieldError{Field: item("fields", i) + ".value", Err: ErrExhausted,
					Reason: "no free token: too many values of this kind share the kept parts (e.g. card numbers with the same first 6 and last 4 digits)"}
			}
			i := pending[ce.Index]
			if recs[ce.Index], err = v.newRecord(c.keys, c.id, subject, i, fields[i], norm[i], recs[ce.Index].Lookup, ttls[i]); err != nil {
				return nil, err
			}
		case errors.Is(err, ErrErased):
			return nil, &FieldError{Field: "subject_id", Reason: "subject was erased while tokenizing", Err: ErrErased}
		default:
			return nil, fmt.Errorf("storing tokens: %w", err)
		}
	}
	for i, j := range dupOf {
		tokens[i] = tokens[j]
	}
	return tokens, nil
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
	if err := v.store.DeleteRecord(ctx, tok); err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	return "", ErrNotFound
}

func (v *Vault) newRecord(keys *subjectKeys, id KeyID, subject string, i int, f Field, norm string, lookup []byte, ttl time.Duration) (Record, error) {
	tok, err := format.Token(f.Kind, norm, format.Options{ChecksumValid: f.ChecksumValid}, v.rand)
	if errors.Is(err, format.ErrInvalidValue) {
		return Record{}, &FieldError{Field: item("fields", i) + ".value", Reason: err.Error(), Err: ErrInvalidArgument}
	}
	if err != nil {
		return Record{}, fmt.Errorf("making token: %w", err)
	}
	r := Record{Token: tok, KeyID: id, Kind: f.Kind, Created: v.now().UTC(), Lookup: lookup}
	if ttl > 0 {
		r.Expires = r.Created.Add(ttl)
	}
	r.Sealed, err = keys.record.Seal(nil, []byte(norm), recordAAD(id, subject, f.Kind, tok))
	return r, err
}

// recordAAD binds a sealed value to its token, subject, key and kind: a
// record copied under another token or subject fails to open.
func recordAAD(id KeyID, subject string, k format.Kind, token string) []byte {
	aad := make([]byte, 0, 48+len(subject)+len(token))
	aad = append(aad, "tokenvault/record/v1"...)
	aad = append(aad, id[:]...)
	aad = appendLP(aad, subject)
	aad = append(aad, byte(k))
	return appendLP(aad, token)
}

func appendLP(b []byte, s string) []byte {
	n := len(s)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, s...)
}
