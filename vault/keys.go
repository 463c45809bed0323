package vault

import (
	"container/list"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// keyCache keeps derived subject keys so the KEK (possibly a remote
// HashiCorp Vault) is off the per-request path. It is bounded (LRU) and
// entries expire after a TTL. It is never the authority on whether a key
// exists: every request first reads the subject key from the store, so an
// erased subject fails even while its keys are cached (and on other
// replicas' caches).
//
// Entries are reference-counted: an evicted entry is zeroed only once the
// last request using it has released it, so eviction never pulls a key out
// from under an in-flight encryption.
type keyCache struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu  sync.Mutex
	lru *list.List // of *cacheEntry, most recent at front
	m   map[KeyID]*list.Element

	hits, misses, evictions atomic.Int64
}

type cacheEntry struct {
	id      KeyID
	keys    *subjectKeys
	expires time.Time
	refs    int
	evicted bool
}

func newKeyCache(max int, ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{max: max, ttl: ttl, now: now, lru: list.New(), m: map[KeyID]*list.Element{}}
}

// acquire returns the cached keys for id (nil if absent or expired) and a
// release function the caller must call when done with them.
func (c *keyCache) acquire(id KeyID) (*subjectKeys, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[id]
	if !ok {
		c.misses.Add(1)
		return nil, nil
	}
	e := el.Value.(*cacheEntry)
	if c.now().After(e.expires) {
		c.removeLocked(el)
		c.misses.Add(1)
		return nil, nil
	}
	c.hits.Add(1)
	c.lru.MoveToFront(el)
	e.refs++
	return e.keys, c.releaser(e)
}

// add caches keys for id and returns them acquired. If another request
// cached keys for id meanwhile, those are returned and ks is zeroed.
func (c *keyCache) add(id KeyID, ks *subjectKeys) (*subjectKeys, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[id]; ok {
		e := el.Value.(*cacheEntry)
		ks.zero()
		e.refs++
		return e.keys, c.releaser(e)
	}
	e := &cacheEntry{id: id, keys: ks, expires: c.now().Add(c.ttl), refs: 1}
	c.m[id] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back())
	}
	return ks, c.releaser(e)
}

func (c *keyCache) releaser(e *cacheEntry) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			e.refs--
			if e.evicted && e.refs == 0 {
				e.keys.zero()
			}
		})
	}
}

// evict drops id (erasure). Its keys are zeroed now or when the last user
// releases them.
func (c *keyCache) evict(id KeyID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[id]; ok {
		c.removeLocked(el)
	}
}

func (c *keyCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.m, e.id)
	c.evictions.Add(1)
	e.evicted = true
	if e.refs == 0 {
		e.keys.zero()
	}
}

// purge zeroes every unused entry (shutdown).
func (c *keyCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
	}
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// keysFor returns the subject's keys. With create, a subject without a key
// gets a new one (first use); otherwise that is ErrNotFound. The caller
// must call release.
func (v *Vault) keysFor(ctx context.Context, subject string, create bool) (KeyID, *subjectKeys, func(), error) {
	sk, err := v.store.SubjectKey(ctx, subject)
	if errors.Is(err, ErrNotFound) && create {
		return v.createKey(ctx, subject)
	}
	if err != nil {
		return KeyID{}, nil, nil, err
	}
	ks, release, err := v.unwrap(ctx, sk)
	return sk.ID, ks, release, err
}

// keysByID returns the subject and keys for a key id, ErrErased if the key
// no longer exists. With reveal, a restricted subject is ErrRestricted,
// checked before the KEK is even asked.
func (v *Vault) keysByID(ctx context.Context, id KeyID, reveal bool) (string, SubjectKey, *subjectKeys, func(), error) {
	subject, sk, err := v.store.SubjectKeyByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return "", sk, nil, nil, ErrErased
	}
	if err != nil {
		return "", sk, nil, nil, err
	}
	if reveal && !sk.Restricted.IsZero() {
		return subject, sk, nil, nil, ErrRestricted
	}
	ks, release, err := v.unwrap(ctx, sk)
	return subject, sk, ks, release, err
}

func (v *Vault) unwrap(ctx context.Context, sk SubjectKey) (*subjectKeys, func(), error) {
	if ks, release := v.cache.acquire(sk.ID); ks != nil {
		return ks, release, nil
	}
	start := time.Now()
	dek, err := v.kek.Unwrap(ctx, sk.Wrapped)
	v.onKEK("unwrap", time.Since(start), err)
	if err != nil {
		return nil, nil, fmt.Errorf("unwrapping subject key: %w", err)
	}
	ks, err := deriveKeys(dek)
	clear(dek)
	if err != nil {
		return nil, nil, err
	}
	ks, release := v.cache.add(sk.ID, ks)
	return ks, release, nil
}

func (v *Vault) createKey(ctx context.Context, subject string) (KeyID, *subjectKeys, func(), error) {
	dek, err := aead.NewKey()
	if err != nil {
		return KeyID{}, nil, nil, err
	}
	defer dek.Zero()
	sk := SubjectKey{Created: v.now().UTC()}
	if _, err := rand.Read(sk.ID[:]); err != nil {
		return KeyID{}, nil, nil, err
	}
	start := time.Now()
	sk.Wrapped, err = v.kek.Wrap(ctx, dek.Bytes())
	v.onKEK("wrap", time.Since(start), err)
	if err != nil {
		return KeyID{}, nil, nil, fmt.Errorf("wrapping new subject key: %w", err)
	}
	stored, err := v.store.CreateSubjectKey(ctx, subject, sk)
	if err != nil {
		return KeyID{}, nil, nil, err
	}
	if stored.ID != sk.ID { // a concurrent first use won; use its key
		ks, release, err := v.unwrap(ctx, stored)
		return stored.ID, ks, release, err
	}
	ks, err := deriveKeys(dek.Bytes())
	if err != nil {
		return KeyID{}, nil, nil, err
	}
	ks, release := v.cache.add(sk.ID, ks)
	return sk.ID, ks, release, nil
}
