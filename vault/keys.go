package vault

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// Subkey labels: one stored DEK serves three uses through HKDF, so that no
// key bytes are shared between sealing records, sealing blobs and keying
// deterministic lookups.
const (
	labelRecord = "tokenvault/v1/record"
	labelBlob   = "tokenvault/v1/blob"
	labelLookup = "tokenvault/v1/lookup"
)

// subjectKeys are the keys derived from one subject DEK. The DEK itself is
// zeroed as soon as these are derived; it is never kept in memory.
type subjectKeys struct {
	record, blob, lookup *aead.Key
}

func deriveKeys(dekBytes []byte) (*subjectKeys, error) {
	dek, err := aead.KeyFromBytes(dekBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: data key: %w", ErrCorrupt, err)
	}
	defer dek.Zero()
	var ks subjectKeys
	for _, d := range []struct {
		dst   **aead.Key
		label string
	}{{&ks.record, labelRecord}, {&ks.blob, labelBlob}, {&ks.lookup, labelLookup}} {
		if *d.dst, err = dek.Derive(d.label); err != nil {
			ks.zero()
			return nil, err
		}
	}
	return &ks, nil
}

func (ks *subjectKeys) zero() {
	ks.record.Zero()
	ks.blob.Zero()
	ks.lookup.Zero()
}

// keysFor returns the subject's key id and keys. With create, a subject
// without a key gets a new one (first use); otherwise that is ErrNotFound.
// The caller must call release.
func (v *Vault) keysFor(ctx context.Context, subject string, create bool) (cached, error) {
	if v.exclusive {
		if c, ok := v.cache.bySubjectID(subject); ok {
			return c, nil
		}
	}
	gen := v.cache.generation()
	sk, err := v.store.SubjectKey(ctx, subject)
	if errors.Is(err, ErrNotFound) && create {
		return v.createKey(ctx, subject, gen)
	}
	if err != nil {
		return cached{}, err
	}
	return v.unwrap(ctx, subject, sk, gen)
}

// keysByID returns the subject and keys for a key id, ErrErased if the key
// no longer exists. With reveal, a restricted subject is ErrRestricted,
// checked before the KEK is even asked.
func (v *Vault) keysByID(ctx context.Context, id KeyID, reveal bool) (cached, error) {
	if v.exclusive {
		if c, ok := v.cache.byKeyID(id); ok {
			if reveal && !c.restricted.IsZero() {
				c.release()
				return cached{}, &restrictedError{subject: c.subject}
			}
			return c, nil
		}
	}
	gen := v.cache.generation()
	subject, sk, err := v.store.SubjectKeyByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return cached{}, ErrErased
	}
	if err != nil {
		return cached{}, err
	}
	if reveal && !sk.Restricted.IsZero() {
		return cached{}, &restrictedError{subject: subject}
	}
	return v.unwrap(ctx, subject, sk, gen)
}

// restrictedError is keysByID's ErrRestricted. It names the subject (as
// stored: see realSubject) so that a refused decrypt can still be audited
// under its subject, as a decrypt is; it is never shown to the caller.
type restrictedError struct{ subject string }

func (e *restrictedError) Error() string { return ErrRestricted.Error() }
func (e *restrictedError) Unwrap() error { return ErrRestricted }

// recordKey is a record's subject key as a [RecordKeyStore] read it with
// the record, at cache generation gen; erased: the key no longer exists.
type recordKey struct {
	subject string
	sk      SubjectKey
	gen     uint64
	erased  bool
}

// recordAndKey reads token's record and, when the store is shared and can
// (a [RecordKeyStore]), its subject's key in the same statement: one round
// trip where Record and SubjectKeyByID make two, and a shred or
// restriction made through another server is seen all the same. Otherwise
// the key is nil and keysOfRecord asks keysByID (the cache of an
// exclusive store, or a second read).
func (v *Vault) recordAndKey(ctx context.Context, token string) (Record, *recordKey, error) {
	rks, ok := v.store.(RecordKeyStore)
	if v.exclusive || !ok {
		rec, err := v.store.Record(ctx, token)
		return rec, nil, err
	}
	gen := v.cache.generation()
	rec, subject, sk, err := rks.RecordWithKey(ctx, token)
	if errors.Is(err, ErrErased) {
		return rec, &recordKey{erased: true}, nil
	}
	if err != nil {
		return rec, nil, err
	}
	if sk.ID != rec.KeyID {
		return rec, nil, fmt.Errorf("%w: a record's key read under another key id", ErrCorrupt)
	}
	return rec, &recordKey{subject: subject, sk: sk, gen: gen}, nil
}

// keysOfRecord is keysByID for rec, with the key recordAndKey read if it
// read one.
func (v *Vault) keysOfRecord(ctx context.Context, rec Record, k *recordKey, reveal bool) (cached, error) {
	switch {
	case k == nil:
		return v.keysByID(ctx, rec.KeyID, reveal)
	case k.erased:
		return cached{}, ErrErased
	case reveal && !k.sk.Restricted.IsZero():
		return cached{}, ErrRestricted
	}
	return v.unwrap(ctx, k.subject, k.sk, k.gen)
}

// bindingLabel separates the subject-key binding from every other MAC.
const bindingLabel = "tokenvault/subject-key-binding/v1"

// KeyBinding is the associated data a subject's wrapped data key is bound
// to at the KEK ([kek.Wrapper]): HMAC-SHA256 keyed with the key id, over
// the subject id. A wrapped key copied under another subject, or given
// another key id, then fails to unwrap, so someone who can write the store
// cannot park a subject's key under a decoy subject, where it would
// survive the subject's erasure and be carried into the next KEK epoch by
// the rewrap.
//
// It is a keyed hash, not the subject id, because the KEK may be remote:
// HashiCorp Vault receives it with every wrap and unwrap, but never the
// random key id, so it learns nothing about the subject from it. It is
// never stored.
func KeyBinding(id KeyID, subject string) []byte {
	m := hmac.New(sha256.New, id[:])
	m.Write([]byte(bindingLabel))
	m.Write([]byte(subject))
	return m.Sum(nil)
}

// unwrap returns the keys of sk, read from the store at cache generation
// gen: from the cache if they are there, else from the KEK.
func (v *Vault) unwrap(ctx context.Context, subject string, sk SubjectKey, gen uint64) (cached, error) {
	if c, ok := v.cache.byKeyID(sk.ID); ok {
		if c.subject != subject {
			// A key id belongs to one subject for life: the store has the
			// key under another subject too (a copy under a decoy). The
			// cache must not answer where the KEK would refuse.
			c.release()
			return cached{}, fmt.Errorf("%w: a subject key is stored under two subjects", ErrCorrupt)
		}
		// The store read just done is at least as fresh as the entry.
		c.restricted = sk.Restricted
		return c, nil
	}
	// A miss is counted where it costs: a KEK call.
	v.cache.misses.Add(1)
	start := time.Now()
	dek, err := v.kek.Unwrap(ctx, sk.Wrapped, KeyBinding(sk.ID, subject))
	v.onKEK("unwrap", time.Since(start), err)
	if err != nil {
		return cached{}, fmt.Errorf("unwrapping subject key: %w", err)
	}
	ks, err := deriveKeys(dek)
	clear(dek)
	if err != nil {
		return cached{}, err
	}
	return v.cache.add(subject, sk, ks, gen), nil
}

func (v *Vault) createKey(ctx context.Context, subject string, gen uint64) (cached, error) {
	dek, err := aead.NewKey()
	if err != nil {
		return cached{}, err
	}
	defer dek.Zero()
	sk := SubjectKey{Created: v.now().UTC()}
	if _, err := rand.Read(sk.ID[:]); err != nil {
		return cached{}, err
	}
	start := time.Now()
	sk.Wrapped, err = v.kek.Wrap(ctx, dek.Bytes(), KeyBinding(sk.ID, subject))
	v.onKEK("wrap", time.Since(start), err)
	if err != nil {
		return cached{}, fmt.Errorf("wrapping new subject key: %w", err)
	}
	stored, err := v.store.CreateSubjectKey(ctx, subject, sk)
	if err != nil {
		return cached{}, err
	}
	if stored.ID != sk.ID { // a concurrent first use won; use its key
		return v.unwrap(ctx, subject, stored, gen)
	}
	ks, err := deriveKeys(dek.Bytes())
	if err != nil {
		return cached{}, err
	}
	return v.cache.add(subject, sk, ks, gen), nil
}
