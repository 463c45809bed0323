package vault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
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

// sealRecord seals value into r.Sealed, bound to r (RecordAADv2).
func sealRecord(keys *subjectKeys, subject string, r *Record, value string) error {
	r.AADVersion = RecordAADv2
	aad, err := recordAAD(subject, r)
	if err != nil {
		return err
	}
	r.Sealed, err = keys.record.Seal(nil, []byte(value), aad)
	return err
}

// openRecord opens r's value with the associated data of its AAD version.
// ErrCorrupt when it fails: the record was altered in the store (its
// value, or any part of it that its version binds), or moved.
func openRecord(keys *subjectKeys, subject string, r Record) (string, error) {
	aad, err := recordAAD(subject, &r)
	if err != nil {
		return "", err
	}
	plain, err := keys.record.Open(nil, r.Sealed, aad)
	if errors.Is(err, aead.ErrDecrypt) {
		return "", fmt.Errorf("%w: token record failed authentication", ErrCorrupt)
	}
	if err != nil {
		return "", err
	}
	return string(plain), nil
}

// recordAAD is the associated data r's value is sealed with: a record
// copied under another token or subject fails to open, and with
// RecordAADv2, so does one whose creation, expiry or lookup key was edited.
//
//	v1: "tokenvault/record/v1" | key id | LP(subject) | kind | LP(token)
//	v2: "tokenvault/record/v2" | key id | LP(subject) | kind | LP(token) |
//	    created (µs, 8) | expires (µs, 8; 0: none) | LP1(lookup)
//
// LP is a 4-byte big-endian length prefix, LP1 a 1-byte one.
func recordAAD(subject string, r *Record) ([]byte, error) {
	var label string
	switch r.AADVersion {
	case RecordAADv1:
		label = "tokenvault/record/v1"
	case RecordAADv2:
		label = "tokenvault/record/v2"
	default:
		return nil, fmt.Errorf("%w: token record of unknown version %d", ErrCorrupt, r.AADVersion)
	}
	aad := make([]byte, 0, 48+len(subject)+len(r.Token)+17+len(r.Lookup))
	aad = append(aad, label...)
	aad = append(aad, r.KeyID[:]...)
	aad = appendLP(aad, subject)
	aad = append(aad, byte(r.Kind))
	aad = appendLP(aad, r.Token)
	if r.AADVersion == RecordAADv1 {
		return aad, nil
	}
	if len(r.Lookup) > 255 {
		return nil, fmt.Errorf("%w: token record lookup key too long", ErrCorrupt)
	}
	aad = binary.BigEndian.AppendUint64(aad, uint64(unixMicro(r.Created)))
	aad = binary.BigEndian.AppendUint64(aad, uint64(unixMicro(r.Expires)))
	aad = append(aad, byte(len(r.Lookup)))
	return append(aad, r.Lookup...), nil
}

// unixMicro is t in microseconds since 1970, 0 for the zero time (no
// expiry), whose UnixMicro would not be 0.
func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func appendLP(b []byte, s string) []byte {
	n := len(s)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, s...)
}
