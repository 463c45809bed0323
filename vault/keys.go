package vault

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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
// entries expire after a TTL.
//
// Whether it is also the authority on which key a subject has, and
// whether the subject is restricted, depends on the store (see
// [ExclusiveStore]): with a store only this process can change, every
// change to those goes through this Vault, which invalidates the cache
// after the store has committed it, so requests skip the store read. With
// a shared store, every request first reads the subject key from the
// store, so an erasure by another server fails requests here even while
// the keys are cached.
//
// A generation counter closes the race between a request that read the
// store before an erasure and caches what it read after the erasure's
// invalidation: entries are only added if no invalidation happened since
// the request started reading.
//
// Entries are reference-counted: an evicted entry is zeroed only once the
// last request using it has released it, so eviction never pulls a key out
// from under an in-flight encryption.
type keyCache struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	lru       *list.List // of *cacheEntry, most recent at front
	byID      map[KeyID]*list.Element
	bySubject map[string]*list.Element
	gen       uint64 // invalidations so far

	hits, misses, evictions atomic.Int64
}

type cacheEntry struct {
	id         KeyID
	subject    string
	restricted time.Time // see SubjectKey.Restricted
	keys       *subjectKeys
	expires    time.Time
	refs       int
	evicted    bool
}

// cached is an acquired cache entry; release must be called when its keys
// are no longer used.
type cached struct {
	id         KeyID
	subject    string
	restricted time.Time
	keys       *subjectKeys
	release    func()
}

func newKeyCache(max int, ttl time.Duration, now func() time.Time) *keyCache {
	return &keyCache{max: max, ttl: ttl, now: now, lru: list.New(),
		byID: map[KeyID]*list.Element{}, bySubject: map[string]*list.Element{}}
}

// byKeyID and bySubjectID return the acquired entry, or ok false if it is
// absent or expired.
func (c *keyCache) byKeyID(id KeyID) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acquireLocked(c.byID[id])
}

func (c *keyCache) bySubjectID(subject string) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acquireLocked(c.bySubject[subject])
}

func (c *keyCache) acquireLocked(el *list.Element) (cached, bool) {
	if el == nil {
		return cached{}, false
	}
	e := el.Value.(*cacheEntry)
	if c.now().After(e.expires) {
		c.removeLocked(el)
		return cached{}, false
	}
	c.hits.Add(1)
	c.lru.MoveToFront(el)
	return c.take(e), true
}

func (c *keyCache) take(e *cacheEntry) cached {
	e.refs++
	return cached{id: e.id, subject: e.subject, restricted: e.restricted, keys: e.keys, release: c.releaser(e)}
}

// generation is read before the store is, and passed to add.
func (c *keyCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// add caches ks for subject's key sk, read from the store at generation
// gen, and returns them acquired. If another request cached keys for the
// id meanwhile, those are returned and ks is zeroed. If the cache was
// invalidated since gen, what was read may be stale: ks is returned for
// this request only (zeroed on release), not cached.
func (c *keyCache) add(subject string, sk SubjectKey, ks *subjectKeys, gen uint64) cached {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[sk.ID]; ok {
		ks.zero()
		return c.take(el.Value.(*cacheEntry))
	}
	e := &cacheEntry{id: sk.ID, subject: subject, restricted: sk.Restricted, keys: ks, expires: c.now().Add(c.ttl)}
	if gen != c.gen {
		e.evicted = true
		return c.take(e)
	}
	if old, ok := c.bySubject[subject]; ok { // the subject's previous key
		c.removeLocked(old)
	}
	el := c.lru.PushFront(e)
	c.byID[sk.ID], c.bySubject[subject] = el, el
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back())
	}
	return c.take(e)
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

// invalidate drops what is cached for subject and for key id (either may
// be zero) after the store changed them (erasure, restriction). Dropped
// keys are zeroed now or when the last user releases them.
func (c *keyCache) invalidate(subject string, id KeyID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if el, ok := c.bySubject[subject]; ok {
		c.removeLocked(el)
	}
	if el, ok := c.byID[id]; ok {
		c.removeLocked(el)
	}
}

func (c *keyCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.byID, e.id)
	if c.bySubject[e.subject] == el {
		delete(c.bySubject, e.subject)
	}
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
				return cached{}, ErrRestricted
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
		return cached{}, ErrRestricted
	}
	return v.unwrap(ctx, subject, sk, gen)
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
