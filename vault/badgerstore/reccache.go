package badgerstore

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

// recordCache keeps the encodings of recently read records, by token
// hash, so that a reveal of a hot token skips badger's read transaction
// and its memtable search: a walk down a skiplist of up to 64 MiB, mostly
// cache misses, ~12% of a reveal's CPU once the memtable is full
// (BENCHMARKS.md, "A cache of record encodings").
//
// What it holds is what badger holds: ciphertext under the subject's key
// and the record's metadata, never plaintext or keys. A cached record of
// a shredded subject is as unreadable as the stored one.
//
// It is correct only because the store is exclusive (badger locks its
// directory) and every write that may change or delete an existing record
// brackets its transaction with begin and end:
//   - begin drops the affected entries (all of them for a write that does
//     not say which tokens it touches) and blocks their refill;
//   - end bumps gen, so that a reader whose transaction may have started
//     before the commit does not store what it read.
//
// A reader reads gen before its transaction and stores its result only if
// gen is unchanged and no bracket that could touch the token is open: any
// commit it did not see ended after it read gen (gen moved) or has not
// ended yet (a bracket is open). Writes that only create keys, such as new
// records (PutRecords checks that the token is absent) and subject keys,
// need no bracket: misses are not cached.
type recordCache struct {
	mu    sync.Mutex
	m     map[[sha256.Size]byte][]byte // never written after insertion
	bytes int64                        // the entries' cost (cost), summed
	max   int64                        // bound of bytes; 0: the cache is off
	gen   uint64                       // bumped by every end
	all   int                          // open brackets of unnamed tokens
	open  map[[sha256.Size]byte]int    // open brackets by token hash

	hits, misses atomic.Int64
}

// maxCachedRecord bounds what one entry may hold: badger keeps larger
// values in its value log (badgerOptions), and a cache of a few large
// records would hold few records.
const maxCachedRecord = 1 << 10

// DefaultRecordCache is the record cache's default bound, in bytes:
// ~18,000 card-number records.
const DefaultRecordCache = 4 << 20

// entryOverhead is what an entry costs beyond its encoding's bytes: the
// map's key and slice header, its share of the map's slots, and the
// allocation's rounding up to a size class.
const entryOverhead = 96

// cost is what an entry of enc counts against the bound.
func cost(enc []byte) int64 { return int64(len(enc)) + entryOverhead }

func newRecordCache(max int64) *recordCache {
	return &recordCache{m: map[[sha256.Size]byte][]byte{}, open: map[[sha256.Size]byte]int{}, max: max}
}

// off is true for a cache of no bytes and for none at all (a Store or
// committer built by hand in a test).
func (c *recordCache) off() bool { return c == nil || c.max == 0 }

// get returns the cached encoding of h's record (callers must not write
// to it) and the generation a reader that missed passes to put.
func (c *recordCache) get(h *[sha256.Size]byte) (enc []byte, gen uint64, ok bool) {
	if c.off() {
		return nil, 0, false
	}
	c.mu.Lock()
	gen = c.gen
	if c.all == 0 && c.open[*h] == 0 {
		enc, ok = c.m[*h]
	}
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return enc, gen, ok
}

// put stores enc (which it keeps: callers must not write to it again) as
// h's record, read in a transaction opened after get returned gen.
func (c *recordCache) put(h *[sha256.Size]byte, enc []byte, gen uint64) {
	n := cost(enc)
	if c.off() || len(enc) > maxCachedRecord || n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.all != 0 || c.open[*h] != 0 {
		return
	}
	if old, ok := c.m[*h]; ok {
		delete(c.m, *h)
		c.bytes -= cost(old)
	}
	// Full: drop entries in map order, which Go randomizes, until enc
	// fits. Random eviction keeps no recency state on the read path.
	for k, v := range c.m {
		if c.bytes+n <= c.max {
			break
		}
		delete(c.m, k)
		c.bytes -= cost(v)
	}
	c.m[*h] = enc
	c.bytes += n
}

// begin opens a bracket around a write that may change or delete the
// record of h, or of any token when h is nil; end closes it once the
// write's transaction is committed or failed. Every begin needs its end,
// also when the write fails: until then the entries stay uncacheable.
func (c *recordCache) begin(h *[sha256.Size]byte) {
	if c.off() {
		return
	}
	c.mu.Lock()
	if h == nil {
		c.all++
		clear(c.m)
		c.bytes = 0
	} else {
		c.open[*h]++
		if old, ok := c.m[*h]; ok {
			delete(c.m, *h)
			c.bytes -= cost(old)
		}
	}
	c.mu.Unlock()
}

func (c *recordCache) end(h *[sha256.Size]byte) {
	if c.off() {
		return
	}
	c.mu.Lock()
	if h == nil {
		c.all--
	} else if c.open[*h]--; c.open[*h] == 0 {
		delete(c.open, *h)
	}
	c.gen++
	c.mu.Unlock()
}

// stats returns the lookups that found a record in the cache and those
// that did not.
func (c *recordCache) stats() (hits, misses int64) {
	if c == nil {
		return 0, 0
	}
	return c.hits.Load(), c.misses.Load()
}
