package vault

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

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
	held       *held
}

// held is one acquisition of a cache entry: one allocation per request
// (a closure over a sync.Once was two).
type held struct {
	c    *keyCache
	e    *cacheEntry
	done atomic.Bool
}

// release gives the entry back; only the first call counts (copies of c
// share it). Releasing the zero cached does nothing.
func (c cached) release() {
	h := c.held
	if h == nil || !h.done.CompareAndSwap(false, true) {
		return
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.e.refs--
	if h.e.evicted && h.e.refs == 0 {
		h.e.keys.zero()
	}
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
	return cached{id: e.id, subject: e.subject, restricted: e.restricted, keys: e.keys, held: &held{c: c, e: e}}
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
