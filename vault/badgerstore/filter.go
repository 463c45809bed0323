package badgerstore

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"sync"
	"sync/atomic"
)

// tokenFilter answers, without a badger read, that a token certainly has
// no record. Tokenizing reads two token keys per field that are almost
// never there (the value, in case it is itself a token, and the drawn
// token, in case it is taken), and a miss costs a walk of every memtable's
// skiplist: cache misses, ~5 µs each at 64 MiB (BENCHMARKS.md). The filter
// costs one cache line per part.
//
// It is a Bloom filter of the records' key hashes, and it must never miss
// a stored token (that would let a drawn token overwrite another record).
// A second one holds the sha256 of the deterministic lookup keys (d/):
// a new value's lookup is read twice per field otherwise (Lookup, and the
// absence check in PutRecords), and a missed one would give a value two
// tokens. Both hold because of two rules:
//   - every op that may create a key adds its hash when it first runs,
//     before its checks and so before its commit, whatever it decides,
//     and it runs in the committer (group.go), so in the order in which
//     groups are checked. Only PutRecords creates t/ keys (ReplaceRecord
//     rewrites one that exists); PutRecords and ReplaceRecord create d/
//     keys; a restore builds a directory that is then opened and scanned.
//     "First" matters: a group re-run after a conflict may accept an op
//     it refused, after the next group was checked;
//   - a filter is consulted only once a scan of a snapshot has added
//     every stored key (the token count's, TokenCountSnapshot, for t/; the
//     scan of d/ that follows it on the same snapshot, in the background),
//     and the filters exist from Open, before any write, so a key
//     committed after that snapshot was added by its write.
//
// Until then, and after a failed scan, it answers "maybe" and every check
// reads badger as before. Deleted records stay in it (a false positive: a
// read); a restart rebuilds it.
//
// Not bits-and-blooms/bloom: that hashes the key again and probes k cache
// lines per test, and is not safe for concurrent use. The keys here are
// SHA-256 digests already, so their bits pick the block and its bits; the
// words are atomic, so tests take no lock.
type tokenFilter struct {
	parts atomic.Pointer[[]*filterPart] // oldest first; only appended to
	grow  sync.Mutex                    // serializes appending a part
	ready atomic.Bool                   // a snapshot scan has finished

	skipped atomic.Int64 // reads answered without badger (tests)
}

// filterPart is a blocked Bloom filter: a key sets one bit in each of the
// 8 words of one 64-byte block (a "split block" filter), so a test reads
// one cache line.
type filterPart struct {
	blocks []filterBlock
	room   int64 // keys it takes before the next part is started
	n      atomic.Int64
}

type filterBlock [8]atomic.Uint64

const (
	// firstFilterKeys is the first part's capacity (1.5 MiB); each next
	// part takes twice the one before, so 10 M tokens make 4 parts,
	// 22.5 MiB.
	firstFilterKeys = 1 << 20
	// filterBitsPerKey: 12 bits (43 keys in a block) give ~0.4% false
	// positives per full part (TestTokenFilter), ~1.3% at 10 M tokens.
	filterBitsPerKey = 12
)

func newTokenFilter() *tokenFilter {
	f := &tokenFilter{}
	parts := []*filterPart{newFilterPart(firstFilterKeys)}
	f.parts.Store(&parts)
	return f
}

func newFilterPart(keys int64) *filterPart {
	blocks := (keys*filterBitsPerKey + 511) / 512
	return &filterPart{blocks: make([]filterBlock, blocks), room: keys}
}

// add records that a key with this hash (sha256 of the token, or of the
// lookup key) may exist.
// A nil filter (a Store built by hand in a test) does nothing.
func (f *tokenFilter) add(h *[sha256.Size]byte) {
	if f == nil {
		return
	}
	for {
		parts := *f.parts.Load()
		p := parts[len(parts)-1]
		if p.n.Load() >= p.room {
			// Full: a part filled past its room tests "maybe" for more and
			// more absent keys, and for every key once saturated (which
			// concurrent adds could do to a small part while one of them
			// started the next).
			f.growAfter(p)
			continue
		}
		if p.has(h) {
			return // a re-run, or the count meeting a write: not counted twice
		}
		p.set(h)
		p.n.Add(1)
		return
	}
}

// growAfter appends a part twice p's size, unless one was appended after
// p already.
func (f *tokenFilter) growAfter(p *filterPart) {
	f.grow.Lock()
	defer f.grow.Unlock()
	if parts := *f.parts.Load(); parts[len(parts)-1] == p {
		next := append(parts[:len(parts):len(parts)], newFilterPart(2*p.room))
		f.parts.Store(&next)
	}
}

// scanned marks the filter complete: a scan has added every key of a
// snapshot taken after the filter was made.
func (f *tokenFilter) scanned() {
	if f != nil {
		f.ready.Store(true)
	}
}

// mayHold is false only if no record with this hash exists.
func (f *tokenFilter) mayHold(h *[sha256.Size]byte) bool {
	if f == nil || !f.ready.Load() {
		return true
	}
	for _, p := range *f.parts.Load() {
		if p.has(h) {
			return true
		}
	}
	f.skipped.Add(1)
	return false
}

// block picks h's block (the high word of a 64×64-bit product maps the
// first 8 bytes onto any number of blocks evenly) and the 48 bits that
// pick one bit in each of its words.
func (p *filterPart) block(h *[sha256.Size]byte) (*filterBlock, uint64) {
	i, _ := bits.Mul64(binary.LittleEndian.Uint64(h[0:8]), uint64(len(p.blocks)))
	return &p.blocks[i], binary.LittleEndian.Uint64(h[8:16])
}

func (p *filterPart) set(h *[sha256.Size]byte) {
	b, w := p.block(h)
	for i := range b {
		b[i].Or(1 << (w >> (6 * i) & 63))
	}
}

func (p *filterPart) has(h *[sha256.Size]byte) bool {
	b, w := p.block(h)
	for i := range b {
		if b[i].Load()&(1<<(w>>(6*i)&63)) == 0 {
			return false
		}
	}
	return true
}

// keyBatch is add for a scan's keys, a batch at a time: their blocks are
// loaded first, together, so that the cache misses of those independent
// loads overlap; one add at a time waits for each miss in turn, its
// atomic writes being ordered after it.
type keyBatch struct {
	f *tokenFilter
	n int
	h [64][sha256.Size]byte
}

// addKey queues a t/ key read from badger.
func (b *keyBatch) addKey(k []byte) {
	if len(k) != tokenKeyLen || k[0] != pToken {
		return
	}
	b.addHash([sha256.Size]byte(k[2:]))
}

// addHash queues a hash (a lookup key's sha256).
func (b *keyBatch) addHash(h [sha256.Size]byte) {
	b.h[b.n] = h
	if b.n++; b.n == len(b.h) {
		b.flush()
	}
}

// flush adds the queued keys.
func (b *keyBatch) flush() {
	if b.f != nil && b.n > 0 {
		parts := *b.f.parts.Load()
		p := parts[len(parts)-1]
		for i := range b.n {
			blk, _ := p.block(&b.h[i])
			blk[0].Load()
		}
		for i := range b.n {
			b.f.add(&b.h[i])
		}
	}
	b.n = 0
}
