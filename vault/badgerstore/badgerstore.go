// Package badgerstore is the embedded [vault.Store], on [badger] v4.
//
// Key layout 3 (one byte of type, then fixed-size parts where possible, so
// that prefixes scan exactly one subject key's data):
//
//	h/<hash(subject) (32)>          -> subject key: v2 | key id | created | wrapped DEK | sealed subject id
//	j/<key id (16)>                 -> hash(subject)         (blobs and records name key ids)
//	t/<sha256(token) (32)>          -> record: v1..v4 [|0x10, group id] | key id | kind | created | lookup | sealed value
//	s/<key id><sha256(token)>       -> empty                 (index: a record alone, for purge/export)
//	s/<key id><group id (32)>       -> sorted record hashes  (index: a run of a batch, index.go)
//	d/<key id><lookup (32)>         -> token                 (deterministic lookups)
//	p/<key id>                      -> shred time            (pending purge after a shred)
//	r/<key id>                      -> restricted since      (restriction of processing)
//	x/<expires (8)><sha256(token)>  -> key id                (expiry index, for the retention purge)
//	e/<hmac(ledger key, subject)>   -> erasure time          (erasure ledger; never the subject id)
//	o/, y/, z/                      -> legal holds: schedule, due index, receipts (holds.go)
//	v/layout                        -> layout version | id-key check
//	c/, q/, n/c                     -> consent history (consent.go)
//	w/, u/, n/w                     -> erasure events, consumer cursors (erasures.go)
//
// No key or value holds a subject id in the clear: hash(subject) is
// [vault.StoreSubjectHash] and the sealed id is sealed under
// [vault.StoreSealKey], both from the ledger key (ids.go, which also
// migrates layout 1, where k/<subject> and i/ held the id in the clear).
// Tokens are addressed by their SHA-256 so keys stay small and bounded
// (a generic token may be 64 KiB; badger caps keys near that). Nothing
// stored is plaintext: values are sealed by the domain before they get here,
// and lookup keys are HMACs under a key derived from the subject's DEK.
//
// Every write is synced (SyncWrites) before it is acknowledged. Concurrent
// record and key writes share one transaction and one sync (group.go), so
// durability does not serialize throughput.
//
// [badger]: https://github.com/dgraph-io/badger
package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

const (
	// Layout 1 (ids.go migrates them): k/<subject>, i/<key id> -> subject.
	pKey   = 'k'
	pKeyID = 'i'
	// Layout 2.
	pHashed  = 'h'
	pHashID  = 'j'
	pToken   = 't'
	pIndex   = 's'
	pLookup  = 'd'
	pPending = 'p'
	// Data-subject rights (rights.go).
	pRestrict = 'r'
	pExpiry   = 'x'
	pLedger   = 'e'

	encV1 = 1
	encV2 = 2 // record with an expiry
	encV3 = 3 // v1 sealed with vault.RecordAADv2 (v1, v2: RecordAADv1)
	encV4 = 4 // v2 sealed with vault.RecordAADv2
	// encGrouped marks a record that names its index group (see
	// encodeRecord).
	encGrouped = 0x10
	lookupSize = 32
	// maxWrapped bounds a stored wrapped key (tink uses the same limit for
	// its KMS envelopes); Vault transit ciphertexts of a 32-byte key are
	// far below it.
	maxWrapped = 4096
	// conflictRetries bounds retries of a transaction that lost a race.
	conflictRetries = 16
	// Memtables: see badgerOptions. The disk reserve is sized from them
	// (space.go).
	numMemtables = 3
	memTableSize = 64 << 20 // badger's default

	// Sizes of fixed-size keys and of an encoded subject key without its
	// wrapped DEK, for the committer's write estimates (group.go).
	tokenKeyLen        = 2 + sha256.Size
	subjectKeyLen      = 2 + sha256.Size
	indexKeyLen        = 2 + len(vault.KeyID{}) + sha256.Size
	expiryKeyLen       = 2 + 8 + sha256.Size
	encodedKeyOverhead = 1 + len(vault.KeyID{}) + 8 + 2 + sealedSubjectMax
)

// Store is the badger store. Beyond [vault.Store] it has every optional
// capability the vault asks for (checked below), and what the server's
// maintenance and backups use: RunGC, Size, WriteBackup and
// BackupSizeEstimate (maintenance.go, backup.go).
type Store struct {
	db    *badger.DB
	dir   string // the data directory, absolute; set only with a mapped-file limit
	log   *slog.Logger
	group *committer      // record and key writes; see group.go
	space *space          // free-space admission of writes (space.go); nil in memory
	ids   *vault.StoreIDs // hash and seal subject ids (ids.go)
	// filter says which tokens certainly have no record, lookups which
	// deterministic lookup keys (d/) certainly do not exist (filter.go);
	// made before anything is written, complete after the token count.
	filter, lookups *tokenFilter
	// records caches recently read record encodings for Record; every
	// write that may change a record brackets itself (reccache.go).
	records *recordCache
	// afterRead, if set (tests only), runs in Record between its read
	// transaction and its put into the record cache.
	afterRead func()
	// events serializes the shreds that append erasure events: they all
	// write the event counter, and would otherwise exhaust their retries
	// under a burst of erasures (erasures.go).
	events sync.Mutex

	// Background token counts (maintenance.go): Close closes closing and
	// waits for counts; countClosed refuses new ones.
	countMu     sync.Mutex
	countClosed bool
	closing     chan struct{}
	counts      sync.WaitGroup
	// limiter is the mapped-file limiter's goroutine (mapped.go), also
	// stopped by closing.
	limiter sync.WaitGroup
}

var (
	_ vault.Store                = (*Store)(nil)
	_ vault.RightsStore          = (*Store)(nil)
	_ vault.LedgerStore          = (*Store)(nil)
	_ vault.KeyScanStore         = (*Store)(nil)
	_ vault.TokenCounter         = (*Store)(nil)
	_ vault.TokenSnapshotCounter = (*Store)(nil)
	_ vault.RecordBatchStore     = (*Store)(nil)
	_ vault.LookupBatchStore     = (*Store)(nil)
	_ vault.ExclusiveStore       = (*Store)(nil)
)

// Options tune the store.
type Options struct {
	// InMemory keeps everything in memory (tests of things other than
	// durability).
	InMemory bool
	// DiskReserve is the free space below which writes are refused with
	// vault.ErrStorageFull (space.go); 0 means DefaultDiskReserve. Smaller
	// than what badger writes on its own after writes stop, it lets a full
	// disk crash the process.
	DiskReserve int64
	// IDKey hashes and seals subject ids: the vault's ledger key (see
	// [vault.StoreSubjectHash]). The store keeps a copy. Nil stands for
	// a fixed, public key, for tests only: ids are then not stored in the
	// clear, but anyone can check a guess. A directory opened with one
	// key refuses every other ([ErrWrongIDKey]).
	IDKey *aead.Key
	// LoadIDKey, if set, is asked for IDKey once the directory is open,
	// with whether it already holds anything made with a key (a layout
	// marker or erasure-ledger entries): a missing key file must then
	// not be replaced by a new key. The store zeroes nothing it returns.
	LoadIDKey func(keyed bool) (*aead.Key, error)
	// MappedLimit, if above zero, bounds the resident pages of badger's
	// memory-mapped files (the process's RssFile, in bytes): above it the
	// store drops its tables' pages from the process (mapped.go). Linux only.
	MappedLimit int64
	// RecordCache bounds the cache of recently read record encodings, in
	// bytes (reccache.go); 0 means DefaultRecordCache, below 0 no cache.
	RecordCache int64
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	bo := badgerOptions(dir, logger).WithInMemory(opts.InMemory)
	if opts.InMemory {
		bo.Dir, bo.ValueDir = "", ""
	}
	var absDir string
	if opts.MappedLimit > 0 {
		if !mappedLimitSupported {
			return nil, errMappedUnsupported
		}
		// /proc/self/maps names files by absolute path.
		var err error
		if absDir, err = filepath.Abs(dir); err != nil {
			return nil, fmt.Errorf("badgerstore: %w", err)
		}
	}
	var sp *space
	if !opts.InMemory {
		// Before badger.Open: replaying the write-ahead log on a full disk
		// is a SIGBUS, not an error (space.go).
		if err := checkOpenSpace(dir); err != nil {
			return nil, fmt.Errorf("badgerstore: opening %s: %w", dir, err)
		}
		reserve := opts.DiskReserve
		if reserve <= 0 {
			reserve = DefaultDiskReserve()
		}
		sp = newSpace(dir, reserve, logger.With("component", "badgerstore"))
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: opening %s: %w", dir, err)
	}
	ids, err := openIDKeys(db, opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	cacheBytes := opts.RecordCache
	switch {
	case cacheBytes == 0:
		cacheBytes = DefaultRecordCache
	case cacheBytes < 0:
		cacheBytes = 0
	}
	s := &Store{db: db, dir: absDir, log: logger, ids: ids, space: sp, closing: make(chan struct{}),
		filter: newTokenFilter(), lookups: newTokenFilter(), records: newRecordCache(cacheBytes)}
	if err := s.upgrade(context.Background()); err != nil {
		ids.Zero()
		db.Close()
		return nil, err
	}
	g := newCommitter(db)
	g.space = sp
	g.records = s.records
	s.group = g
	if opts.MappedLimit > 0 && !opts.InMemory {
		s.limiter.Add(1)
		go s.limitMappedEvery(mappedCheckEvery, opts.MappedLimit)
	}
	return s, nil
}

func openIDKeys(db *badger.DB, opts Options) (*vault.StoreIDs, error) {
	k := opts.IDKey
	if opts.LoadIDKey != nil {
		has, err := keyed(db)
		if err != nil {
			return nil, err
		}
		if k, err = opts.LoadIDKey(has); err != nil {
			return nil, err
		}
		if k == nil {
			return nil, errors.New("badgerstore: no subject-id key")
		}
	}
	return newIDKeys(k)
}

// badgerOptions are the options of every badger database tokenvault opens
// (the live store and restores), so that both lay data out the same way.
func badgerOptions(dir string, logger *slog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		// Large records go to the value log so a 1,000-item batch of big
		// values fits in one transaction.
		WithValueThreshold(1 << 10).
		// No block compression: values are ciphertext and do not compress,
		// and uncompressed files keep a byte search of the data directory
		// meaningful (an auditor can check that an erased subject's key
		// bytes are gone; compressed blocks could hide them from grep).
		WithCompression(options.None).
		// Memory: badger's defaults (5 memtables of 64 MiB, a 256 MiB
		// block cache) alone approach 600 MiB of heap, twice that in RSS
		// with Go's GC headroom. Three memtables still absorb flush
		// stalls, and a 64 MiB block cache holds the hot index blocks;
		// record reads are random anyway. (BENCHMARKS.md: RSS target.)
		WithNumMemtables(numMemtables).
		WithMemTableSize(memTableSize).
		// Smaller value-log files than badger's 1 GiB: a value-log GC
		// rewrites one file at a time and needs that much free (space.go).
		WithValueLogFileSize(valueLogFileSize).
		WithBlockCacheSize(64 << 20).
		// Each concurrent compaction holds its table builders' buffers
		// (most of the heap during bulk loads); badger's default is 4.
		WithNumCompactors(2).
		WithLogger(badgerLogger{logger.With("component", "badger")})
}

// RecordCache reports the reads of a record that the record cache
// answered and those it did not (reccache.go): those went to the token
// filter and, unless it ruled the token out, to badger.
func (s *Store) RecordCache() (hits, misses int64) { return s.records.stats() }

// Close stops the write group and closes the database.
func (s *Store) Close() error {
	s.countMu.Lock()
	if !s.countClosed {
		s.countClosed = true
		if s.closing != nil { // nil in tests that build a Store by hand
			close(s.closing)
		}
	}
	s.countMu.Unlock()
	s.counts.Wait()
	s.limiter.Wait()
	s.group.close()
	// A bracket that never ends: after Close, no read is answered from the
	// cache (badger's ErrDBClosed instead), and the entries are dropped.
	s.records.begin(nil)
	s.ids.Zero()
	return s.db.Close()
}

// Exclusive is true: badger holds a lock on its directory, so only this
// process changes the store, and the vault may trust its key cache.
func (s *Store) Exclusive() bool { return true }

// GroupCommits reports the durable write groups committed since Open and
// the ops they carried: each group is one transaction and one sync of the
// write-ahead log (none when every op in it was refused and nothing was
// written), so ops / groups is the mean group size, and what the sync
// costs is shared by that many writes (BENCHMARKS.md).
func (s *Store) GroupCommits() (groups, ops int64) {
	return s.group.groups.Load(), s.group.groupOps.Load()
}

func key(prefix byte, parts ...[]byte) []byte {
	n := 2
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 2, n)
	k[0], k[1] = prefix, '/'
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// update runs fn in a read-write transaction, retrying lost races. It
// does not know which records fn changes, so the record cache is emptied
// and bypassed until it returns (reccache.go); update serves the rare
// writes (erasure, purges, holds), not tokenize or reveal.
func (s *Store) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	s.records.begin(nil)
	defer s.records.end(nil)
	return s.updateNoRecords(ctx, fn)
}

// updateNoRecords is update for a write that changes no record (t/ keys):
// consent, restriction, erasure events and their consumers' cursors. It
// leaves the record cache alone, so that frequent ones (a consent per
// order, a consumer's acknowledgements) do not keep emptying it.
func (s *Store) updateNoRecords(ctx context.Context, fn func(txn *badger.Txn) error) error {
	for range conflictRetries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.space.admit(maxWrite(s.db)); err != nil {
			return err
		}
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("badgerstore: too much contention: %w", badger.ErrConflict)
}

func (s *Store) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

func get(txn *badger.Txn, k []byte) ([]byte, error) {
	it, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, vault.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return it.ValueCopy(nil)
}

// subjectKeyOf is the key of subject's key entry, h/<hash(subject)>.
func (s *Store) subjectKeyOf(subject string) ([]byte, error) {
	h, err := s.ids.Hash(subject)
	if err != nil {
		return nil, err
	}
	return key(pHashed, h), nil
}

func (s *Store) SubjectKey(ctx context.Context, subject string) (sk vault.SubjectKey, err error) {
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return sk, err
	}
	err = s.view(ctx, func(txn *badger.Txn) error {
		sk, err = subjectKey(txn, hk)
		return err
	})
	return sk, err
}

// subjectKey reads the subject key stored under hk (see subjectKeyOf)
// with its restriction mark.
func subjectKey(txn *badger.Txn, hk []byte) (vault.SubjectKey, error) {
	sk, _, err := storedKey(txn, hk)
	if err != nil {
		return sk, err
	}
	sk.Restricted, err = restrictedSince(txn, sk.ID)
	return sk, err
}

// storedKey is subjectKey without the restriction mark (a second read that
// the write paths do not need), and with the sealed subject id.
func storedKey(txn *badger.Txn, hk []byte) (vault.SubjectKey, []byte, error) {
	b, err := get(txn, hk)
	if err != nil {
		return vault.SubjectKey{}, nil, err
	}
	sk, sealed, err := decodeSubjectKey(b)
	if err == nil && sealed == nil {
		err = fmt.Errorf("%w: subject key record without its subject", vault.ErrCorrupt)
	}
	return sk, sealed, err
}

// liveKey returns the subject's key (without its restriction mark) and
// sealed id if it is still id, ErrErased if the subject has no key or a
// newer one (erased meanwhile). Reading it puts the key in the
// transaction's read set, so a shred committing concurrently makes the
// transaction fail with a conflict (and its retry see ErrErased).
func liveKey(txn *badger.Txn, hk []byte, id vault.KeyID) (vault.SubjectKey, []byte, error) {
	sk, sealed, err := storedKey(txn, hk)
	if errors.Is(err, vault.ErrNotFound) || (err == nil && sk.ID != id) {
		return vault.SubjectKey{}, nil, vault.ErrErased
	}
	return sk, sealed, err
}

func (s *Store) SubjectKeyByID(ctx context.Context, id vault.KeyID) (subject string, sk vault.SubjectKey, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		h, err := get(txn, key(pHashID, id[:]))
		if err != nil {
			return err
		}
		sk, err = subjectKey(txn, key(pHashed, h))
		if errors.Is(err, vault.ErrNotFound) || (err == nil && sk.ID != id) {
			return fmt.Errorf("%w: key index points at a missing key", vault.ErrCorrupt)
		}
		if err != nil {
			return err
		}
		_, sealed, err := storedKey(txn, key(pHashed, h))
		if err != nil {
			return err
		}
		subject, err = s.ids.OpenSubject(id, sealed)
		return err
	})
	return subject, sk, err
}

func (s *Store) CreateSubjectKey(ctx context.Context, subject string, sk vault.SubjectKey) (out vault.SubjectKey, err error) {
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return out, err
	}
	if _, err := encodeSubjectKey(sk, nil); err != nil {
		return out, err
	}
	var w weight
	w.set(subjectKeyLen, len(sk.Wrapped)+encodedKeyOverhead)
	w.set(len(key(pHashID, sk.ID[:])), sha256.Size)
	err = s.group.doNew(ctx, w, func(txn *badger.Txn) error {
		existing, err := subjectKey(txn, hk)
		if err == nil {
			out = existing
			return nil
		}
		if !errors.Is(err, vault.ErrNotFound) {
			return err
		}
		out = sk
		return s.putSubjectKey(txn, subject, sk)
	})
	return out, err
}

func (s *Store) PutRecords(ctx context.Context, subject string, id vault.KeyID, recs []vault.Record) error {
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return err
	}
	// Keys and encodings are built once, outside the transaction (a
	// retried group runs fn again), and carved from one buffer per call
	// instead of five allocations per record. badger keeps the slices of
	// its Sets until the commit; nothing writes to them after this.
	// One index entry per run of up to groupMax records (index.go); the
	// records of a run of more than one carry its group id.
	groups := (len(recs) + groupMax - 1) / groupMax
	size := groups * indexKeyLen
	for i, r := range recs {
		size += tokenKeyLen + encodedRecordLen(r, nil)
		if runLen(len(recs), i) > 1 {
			size += 2 * sha256.Size // its group, and its hash in the entry
		}
		if r.Lookup != nil {
			size += 2 + len(id) + len(r.Lookup)
		}
	}
	size += groups * sha256.Size // the group ids
	buf := make([]byte, 0, size)
	carve := func(n int) []byte { // the next n bytes of buf, capacity n
		buf = buf[:len(buf)+n]
		return buf[len(buf)-n : len(buf) : len(buf)]
	}
	type entry struct {
		hash  [sha256.Size]byte
		tkey  []byte
		group []byte // its run's group id, nil in a run of one
		enc   []byte
		maybe bool // the filter may hold the token (set in each run)
		// The lookup key (deterministic records), its hash for the lookup
		// filter, and whether that filter may hold it (set in each run).
		lkey   []byte
		lhash  [sha256.Size]byte
		lmaybe bool
	}
	ents := make([]entry, len(recs))
	var w weight     // the writes below
	var group []byte // the group id of the run
	for i, r := range recs {
		e := &ents[i]
		e.tkey = tokenKey(carve(tokenKeyLen)[:0], r.Token)
		e.hash = [sha256.Size]byte(e.tkey[2:])
		if i%groupMax == 0 {
			group = nil
			if runLen(len(recs), i) > 1 {
				group = newGroupID(carve(sha256.Size))
			}
		}
		e.group = group
		var err error
		if e.enc, err = appendRecord(carve(encodedRecordLen(r, group))[:0], r, group); err != nil {
			return err
		}
		if r.Lookup != nil {
			e.lkey = lookupKey(carve(2 + len(id) + len(r.Lookup))[:0], id, r.Lookup)
			e.lhash = sha256.Sum256(e.lkey)
			w.set(len(e.lkey), len(r.Token))
		}
		w.set(tokenKeyLen, len(e.enc))
		if !r.Expires.IsZero() {
			w.set(expiryKeyLen, len(id))
		}
	}
	// The index entries: key and value of each run. A run of one record
	// is keyed by its hash, with the empty value; a longer one by its
	// group id, listing its hashes (index.go).
	ikeys := make([][]byte, 0, groups)
	ivals := make([][]byte, 0, groups)
	for lo := 0; lo < len(recs); lo += groupMax {
		run := ents[lo:min(lo+groupMax, len(recs))]
		k := append(carve(indexKeyLen)[:0], pIndex, '/')
		k = append(k, id[:]...)
		var v []byte
		if len(run) == 1 {
			k = append(k, run[0].hash[:]...)
		} else {
			k = append(k, run[0].group...)
			hashes := make([][]byte, len(run))
			for i := range run {
				hashes[i] = run[i].tkey[2:]
			}
			v = appendGroupValue(carve(len(run) * sha256.Size)[:0], hashes)
		}
		ikeys, ivals = append(ikeys, k), append(ivals, v)
		w.set(indexKeyLen, len(v))
	}
	return s.group.doNew(ctx, w, func(txn *badger.Txn) error {
		// The filter (filter.go) is asked first, then given the tokens, in
		// every run and whatever the run decides: an op refused in its
		// group's first run may be accepted when the group runs again after
		// a conflict, and by then the next group's ops have been checked
		// against the filter (group.go). So a token is in the filter from
		// the first time an op tries to write it, before any later op's
		// check; asking first keeps an op's own tokens from counting
		// against it. Lookup keys go the same way through the lookup
		// filter.
		for i := range ents {
			e := &ents[i]
			e.maybe = s.filter.mayHold(&e.hash)
			e.lmaybe = e.lkey != nil && s.lookups.mayHold(&e.lhash)
		}
		for i := range ents {
			e := &ents[i]
			s.filter.add(&e.hash)
			if e.lkey != nil {
				s.lookups.add(&e.lhash)
			}
		}
		if _, _, err := liveKey(txn, hk, id); err != nil {
			return err
		}
		// All checks first, then all writes: a rejected batch writes
		// nothing, even inside a shared group transaction.
		seenTok := make(map[[sha256.Size]byte]bool, len(recs))
		var seenLookup map[string]bool
		for i, r := range recs {
			e := &ents[i]
			if seenTok[e.hash] {
				return &vault.CollisionError{Index: i}
			}
			seenTok[e.hash] = true
			// The filter rules out most drawn tokens without a read: any op
			// that could have written this token (in the group in flight,
			// or before this one in this group) added it when it first ran.
			if e.maybe {
				if err := absent(txn, e.tkey); err != nil {
					return collision(err, i, false)
				}
			}
			if r.Lookup != nil {
				if seenLookup == nil {
					seenLookup = map[string]bool{}
				}
				if seenLookup[string(r.Lookup)] {
					return &vault.CollisionError{Index: i, Lookup: true}
				}
				seenLookup[string(r.Lookup)] = true
				if e.lmaybe {
					if err := absent(txn, e.lkey); err != nil {
						return collision(err, i, true)
					}
				}
			}
		}
		for i, r := range recs {
			e := &ents[i]
			if e.lkey != nil {
				if err := txn.Set(e.lkey, []byte(r.Token)); err != nil {
					return err
				}
			}
			if err := txn.Set(e.tkey, e.enc); err != nil {
				return err
			}
			if !r.Expires.IsZero() {
				if err := txn.Set(expiryKey(r.Expires, e.hash[:]), id[:]); err != nil {
					return err
				}
			}
		}
		for i, k := range ikeys {
			if err := txn.Set(k, ivals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

var errExists = errors.New("exists")

// absent returns nil if k does not exist, errExists if it does.
func absent(txn *badger.Txn, k []byte) error {
	_, err := txn.Get(k)
	switch {
	case err == nil:
		return errExists
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil
	default:
		return err
	}
}

func collision(err error, i int, lookup bool) error {
	if err == errExists {
		return &vault.CollisionError{Index: i, Lookup: lookup}
	}
	return err
}

func (s *Store) Record(ctx context.Context, token string) (r vault.Record, err error) {
	if err := ctx.Err(); err != nil {
		return r, err
	}
	var kb [tokenKeyLen]byte
	h := (*[sha256.Size]byte)(tokenKey(kb[:0], token)[2:])
	// The cache before the filter: a hit then costs no read of the
	// filter's bits, which are a cache miss of their own in a large store.
	enc, gen, ok := s.records.get(h)
	if ok {
		// A copy: the record returned aliases its encoding, and callers
		// may write to it.
		return decodeRecord(bytes.Clone(enc))
	}
	if !s.filter.mayHold(h) {
		return r, vault.ErrNotFound // with no allocation, no transaction
	}
	// The key and the copy of the value in one allocation (a reveal reads
	// one record per token): recordGuess bytes after the key hold most
	// records; a longer one is copied on its own. The key part is never
	// written again (badger's item refers to it).
	buf := make([]byte, tokenKeyLen, tokenKeyLen+recordGuess)
	k := buf[:copy(buf, kb[:])]
	var b []byte // the encoding read, in buf
	err = s.view(ctx, func(txn *badger.Txn) error {
		var found bool
		r, b, found, err = readRecordBytes(txn, k, buf[tokenKeyLen:tokenKeyLen])
		if err == nil && !found {
			return vault.ErrNotFound
		}
		return err
	})
	if err == nil {
		if s.afterRead != nil {
			s.afterRead()
		}
		s.records.put(h, bytes.Clone(b), gen)
	}
	return r, err
}

// recordGuess is the room Record leaves for a record's encoding next to
// its key: a card number's record with a lookup key and an expiry is
// about 140 bytes, 172 in a batch (its group, encodeRecord).
const recordGuess = 192

// RecordsOf reads the records of tokens in one read transaction. The
// filter goes first: when it rules out every token, as for almost every
// live-token check of a tokenize, no transaction is opened (a new one
// waits for the commits in flight).
func (s *Store) RecordsOf(ctx context.Context, tokens []string, found func(int, vault.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var keys []byte // tokenKeyLen each: the tokens the filter may hold
	var idx []int   // their indexes in tokens
	var one [tokenKeyLen]byte
	for i, t := range tokens {
		k := tokenKey(one[:0], t)
		if !s.filter.mayHold((*[sha256.Size]byte)(k[2:])) {
			continue
		}
		if keys == nil {
			keys, idx = make([]byte, 0, tokenKeyLen*(len(tokens)-i)), make([]int, 0, len(tokens)-i)
		}
		keys, idx = append(keys, k...), append(idx, i)
	}
	if len(idx) == 0 {
		return nil
	}
	return s.view(ctx, func(txn *badger.Txn) error {
		for j, i := range idx {
			r, ok, err := readRecord(txn, keys[j*tokenKeyLen:(j+1)*tokenKeyLen], nil)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := found(i, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// LookupsOf is [vault.LookupBatchStore]: the lookups the lookup filter
// may hold, and their records, are read in one read transaction (none
// when it rules out every one, as for new values).
func (s *Store) LookupsOf(ctx context.Context, id vault.KeyID, lookups [][]byte, found func(int, vault.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var keys [][]byte // the lookup keys the filter may hold
	var idx []int     // their indexes in lookups
	var kb [2 + len(vault.KeyID{}) + lookupSize]byte
	for i, l := range lookups {
		if h := sha256.Sum256(lookupKey(kb[:0], id, l)); !s.lookups.mayHold(&h) {
			continue
		}
		keys, idx = append(keys, lookupKey(nil, id, l)), append(idx, i)
	}
	if len(idx) == 0 {
		return nil
	}
	return s.view(ctx, func(txn *badger.Txn) error {
		for j, i := range idx {
			tok, err := get(txn, keys[j])
			if errors.Is(err, vault.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			r, ok, err := readRecord(txn, tokenKey(nil, string(tok)), nil)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := found(i, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// lookupKey appends the key of a deterministic lookup, d/<key id><lookup>,
// to b. The lookup filter holds the sha256 of such keys.
func lookupKey(b []byte, id vault.KeyID, lookup []byte) []byte {
	return append(append(append(b, pLookup, '/'), id[:]...), lookup...)
}

// tokenKey appends token's key, t/<sha256(token)>, to b.
func tokenKey(b []byte, token string) []byte {
	h := sha256.Sum256([]byte(token))
	return append(append(b, pToken, '/'), h[:]...)
}

// readRecord reads the record under k (a tokenKey) in txn, its encoding
// copied to dst (appended, so a dst too small is outgrown). ok is false
// when there is none.
func readRecord(txn *badger.Txn, k []byte, dst []byte) (r vault.Record, ok bool, err error) {
	r, _, ok, err = readRecordBytes(txn, k, dst)
	return r, ok, err
}

// readRecordBytes is readRecord that also returns the encoding the record
// was decoded from (and aliases).
func readRecordBytes(txn *badger.Txn, k []byte, dst []byte) (r vault.Record, b []byte, ok bool, err error) {
	it, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return r, nil, false, nil
	}
	if err != nil {
		return r, nil, false, err
	}
	if b, err = it.ValueCopy(dst); err != nil {
		return r, nil, false, err
	}
	r, err = decodeRecord(b)
	return r, b, err == nil, err
}

func (s *Store) Lookup(ctx context.Context, id vault.KeyID, lookup []byte) (token string, err error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var kb [2 + len(vault.KeyID{}) + lookupSize]byte
	if h := sha256.Sum256(lookupKey(kb[:0], id, lookup)); !s.lookups.mayHold(&h) {
		return "", vault.ErrNotFound // a new value: no allocation, no transaction
	}
	k := lookupKey(nil, id, lookup) // kb would escape with the closure below
	err = s.view(ctx, func(txn *badger.Txn) error {
		b, err := get(txn, k)
		token = string(b)
		return err
	})
	return token, err
}

func (s *Store) ShredSubject(ctx context.Context, subject string, ledger vault.LedgerEntry) (id vault.KeyID, err error) {
	if ledger.Hash != nil && len(ledger.Hash) != ledgerHashSize {
		return id, fmt.Errorf("badgerstore: ledger hash of %d bytes, want %d", len(ledger.Hash), ledgerHashSize)
	}
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return id, err
	}
	err = s.update(ctx, func(txn *badger.Txn) error {
		id, err = shredIn(txn, hk, ledger)
		return err
	})
	return id, err
}

// shredIn is ShredSubject's transaction (ShredErasure adds the event to
// it, erasures.go).
func shredIn(txn *badger.Txn, hk []byte, ledger vault.LedgerEntry) (vault.KeyID, error) {
	sk, err := subjectKey(txn, hk)
	if err != nil {
		return vault.KeyID{}, err
	}
	id := sk.ID
	if err := txn.Delete(hk); err != nil {
		return id, err
	}
	if err := txn.Delete(key(pHashID, id[:])); err != nil {
		return id, err
	}
	if err := txn.Delete(key(pRestrict, id[:])); err != nil {
		return id, err
	}
	if ledger.Hash != nil {
		if err := putLedger(txn, ledger); err != nil {
			return id, err
		}
	}
	return id, txn.Set(key(pPending, id[:]), binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())))
}

// purgeBatch bounds one purge transaction.
const purgeBatch = 1000

func (s *Store) PurgeKey(ctx context.Context, id vault.KeyID) (vault.PurgeCounts, error) {
	var c vault.PurgeCounts
	var consent int64 // consent history (consent.go), not reported
	for _, p := range []struct {
		prefix byte
		n      *int64
	}{{pIndex, &c.Records}, {pLookup, &c.Lookups}, {pConsent, &consent}, {pConsentLatest, &consent}} {
		for {
			n, more, err := s.purgePrefix(ctx, key(p.prefix, id[:]), p.prefix == pIndex)
			*p.n += int64(n)
			if err != nil {
				return c, err
			}
			if !more {
				break
			}
		}
	}
	err := s.update(ctx, func(txn *badger.Txn) error {
		if err := txn.Delete(key(pRestrict, id[:])); err != nil {
			return err
		}
		if err := txn.Delete(consentCounterKey(id)); err != nil {
			return err
		}
		return txn.Delete(key(pPending, id[:]))
	})
	return c, err
}

// purgePrefix deletes about purgeBatch keys under prefix (for the record
// index, the records its entries list, with those records), returning
// how many keys (records) it deleted and whether any may be left.
func (s *Store) purgePrefix(ctx context.Context, prefix []byte, records bool) (n int, more bool, err error) {
	err = s.update(ctx, func(txn *badger.Txn) error {
		n, more = 0, false
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: records})
		var keys, hashes [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			if len(keys) == purgeBatch || len(hashes) >= purgeBatch {
				more = true
				break
			}
			k := it.Item().KeyCopy(nil)
			keys = append(keys, k)
			if records {
				val, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				members, err := groupMembers(k[len(prefix):], val)
				if err != nil {
					it.Close()
					return err
				}
				hashes = append(hashes, members...)
			}
		}
		it.Close()
		for _, h := range hashes {
			// The expiry index entry names the record's expiry, which
			// only the record holds.
			if err := deleteExpiryEntry(txn, h); err != nil {
				return err
			}
			if err := txn.Delete(key(pToken, h)); err != nil {
				return err
			}
		}
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		if records {
			n = len(hashes)
		}
		return nil
	})
	return n, more, err
}

func (s *Store) PendingPurges(ctx context.Context) (ids []vault.KeyID, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		prefix := key(pPending)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var id vault.KeyID
			if copy(id[:], it.Item().Key()[len(prefix):]) != len(id) {
				return fmt.Errorf("%w: pending-purge key", vault.ErrCorrupt)
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// SubjectKeys lists subject keys in the order of their hashes (the store
// does not know ids otherwise), after the subject named after.
func (s *Store) SubjectKeys(ctx context.Context, after string, limit int) (out []vault.SubjectEntry, err error) {
	prefix := key(pHashed)
	start := prefix
	if after != "" {
		if start, err = s.subjectKeyOf(after); err != nil {
			return nil, err
		}
	}
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(max(limit, 1), 100)})
		defer it.Close()
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			if after != "" && bytes.Equal(it.Item().Key(), start) {
				continue
			}
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			sk, sealed, err := decodeSubjectKey(b)
			if err == nil && sealed == nil {
				err = fmt.Errorf("%w: subject key record without its subject", vault.ErrCorrupt)
			}
			if err != nil {
				return err
			}
			subject, err := s.ids.OpenSubject(sk.ID, sealed)
			if err != nil {
				return err
			}
			out = append(out, vault.SubjectEntry{Subject: subject, Key: sk})
		}
		return nil
	})
	return out, err
}

func (s *Store) ReplaceWrapped(ctx context.Context, subject string, id vault.KeyID, wrapped []byte) error {
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return err
	}
	var w weight
	w.set(subjectKeyLen, len(wrapped)+encodedKeyOverhead)
	return s.group.doNew(ctx, w, func(txn *badger.Txn) error {
		sk, sealed, err := liveKey(txn, hk, id)
		if err != nil {
			return err
		}
		sk.Wrapped = wrapped
		enc, err := encodeSubjectKey(sk, sealed)
		if err != nil {
			return err
		}
		return txn.Set(hk, enc)
	})
}

func (s *Store) HasSubjectKeys(ctx context.Context) (found bool, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		for _, p := range []byte{pHashed, pPending} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: key(p), PrefetchValues: false})
			it.Rewind()
			found = found || it.Valid()
			it.Close()
		}
		return nil
	})
	return found, err
}

// Encodings. Strict: a version byte, fixed sizes checked, lengths bounded.

// subject key v1 (layout 1): v1 | key id | created | wrappedLen(2) | wrapped
// subject key v2 (layout 2): v2 | key id | created | wrappedLen(2) | wrapped | sealed subject id
// encodeSubjectKey writes v1 when sealed is nil (the fuzz test's round
// trip; the store writes only v2).
func encodeSubjectKey(sk vault.SubjectKey, sealed []byte) ([]byte, error) {
	if len(sk.Wrapped) == 0 || len(sk.Wrapped) > maxWrapped {
		return nil, fmt.Errorf("badgerstore: wrapped key size %d out of range", len(sk.Wrapped))
	}
	ver := byte(encV1)
	if sealed != nil {
		if len(sealed) <= aead.Overhead || len(sealed) > sealedSubjectMax {
			return nil, fmt.Errorf("badgerstore: sealed subject id of %d bytes out of range", len(sealed))
		}
		ver = encV2
	}
	b := make([]byte, 0, encodedKeyOverhead+len(sk.Wrapped))
	b = append(b, ver)
	b = append(b, sk.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(sk.Created.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(sk.Wrapped)))
	b = append(b, sk.Wrapped...)
	return append(b, sealed...), nil
}

func decodeSubjectKey(b []byte) (vault.SubjectKey, []byte, error) {
	var sk vault.SubjectKey
	const head = 1 + len(sk.ID) + 8 + 2
	if len(b) < head || (b[0] != encV1 && b[0] != encV2) {
		return sk, nil, errCorruptSubjectKey
	}
	copy(sk.ID[:], b[1:])
	sk.Created = time.Unix(0, int64(binary.BigEndian.Uint64(b[1+len(sk.ID):]))).UTC()
	n := int(binary.BigEndian.Uint16(b[head-2:]))
	if n == 0 || n > maxWrapped || len(b) < head+n {
		return sk, nil, errCorruptSubjectKey
	}
	sk.Wrapped = b[head : head+n]
	rest := b[head+n:]
	switch {
	case b[0] == encV1 && len(rest) == 0:
		return sk, nil, nil
	case b[0] == encV2 && len(rest) > aead.Overhead && len(rest) <= sealedSubjectMax:
		return sk, rest, nil
	}
	return sk, nil, errCorruptSubjectKey
}

// errCorruptSubjectKey is made once: decodeSubjectKey runs on every
// tokenize (the subject's key is read in the group transaction), and
// building the error there cost three allocations per call that were
// almost never used.
var errCorruptSubjectKey = fmt.Errorf("%w: subject key record", vault.ErrCorrupt)

// record v1: ver | key id | kind | created | tokenLen(4) | token | lookupLen(1) | lookup | sealed
// record v2: ver | key id | kind | created | expires (non-zero) | tokenLen(4) | token | lookupLen(1) | lookup | sealed
// v3 and v4 are v1 and v2 for records sealed with vault.RecordAADv2 (v1
// and v2 records are vault.RecordAADv1, from before records bound their
// metadata). A record without expiry is always written as v1 or v3, so
// every record has exactly one encoding (the fuzz test checks it).
//
// A record of a run of more than one record of a batch has encGrouped
// set in the version byte and the run's group id (the key of the run's
// index entry, index.go) after it:
// ver|encGrouped | group (32) | key id | ...
//
// The version byte is not authenticated, and need not be: relabelling a
// v3 record as v1 makes the vault open it with the v1 associated data,
// which fails, since it was sealed with the v2 one. A wrong group makes
// the record's index entry unfindable from it, which a store writer can
// do anyway by deleting the entry.
func encodeRecord(r vault.Record, group []byte) ([]byte, error) {
	return appendRecord(make([]byte, 0, encodedRecordLen(r, group)), r, group)
}

// encodedRecordLen is the length of r's encoding in group (nil: its own).
func encodedRecordLen(r vault.Record, group []byte) int {
	n := 1 + len(r.KeyID) + 1 + 8 + 4 + len(r.Token) + 1 + len(r.Lookup) + len(r.Sealed)
	if !r.Expires.IsZero() {
		n += 8
	}
	if group != nil {
		n += sha256.Size
	}
	return n
}

// appendRecord appends r's encoding to b; group is the group id of its
// run (index.go), nil for a record alone in its run.
func appendRecord(b []byte, r vault.Record, group []byte) ([]byte, error) {
	var ver byte
	switch r.AADVersion {
	case vault.RecordAADv1:
		ver = encV1
	case vault.RecordAADv2:
		ver = encV3
	default:
		return nil, fmt.Errorf("badgerstore: record with unknown AAD version %d", r.AADVersion)
	}
	if !r.Expires.IsZero() {
		ver++ // v2, v4
	}
	if group != nil {
		if len(group) != sha256.Size {
			return nil, fmt.Errorf("badgerstore: record group of %d bytes", len(group))
		}
		b = append(append(b, ver|encGrouped), group...)
	} else {
		b = append(b, ver)
	}
	b = append(b, r.KeyID[:]...)
	b = append(b, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Created.UnixNano()))
	if !r.Expires.IsZero() {
		b = binary.BigEndian.AppendUint64(b, uint64(r.Expires.UnixNano()))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Token)))
	b = append(b, r.Token...)
	b = append(b, byte(len(r.Lookup)))
	b = append(b, r.Lookup...)
	return append(b, r.Sealed...), nil
}

// errBadRecord is made once: decodeRecord runs on every reveal.
var errBadRecord = fmt.Errorf("%w: token record", vault.ErrCorrupt)

func decodeRecord(b []byte) (vault.Record, error) {
	r, _, err := decodeGrouped(b)
	return r, err
}

// decodeGrouped decodes a record and returns its group (nil: the record
// is its own group, keyed by its token's hash). Both alias b.
func decodeGrouped(b []byte) (vault.Record, []byte, error) {
	var r vault.Record
	bad := errBadRecord
	if len(b) == 0 {
		return r, nil, bad
	}
	ver := b[0]
	var group []byte
	if ver&encGrouped != 0 {
		if len(b) < 1+sha256.Size {
			return r, nil, bad
		}
		ver &^= encGrouped
		group = b[1 : 1+sha256.Size]
		b = b[sha256.Size:] // b[0] is now group's last byte; ver holds the version
	}
	head := 1 + len(r.KeyID) + 1 + 8 + 4
	if len(b) < head || ver < encV1 || ver > encV4 {
		return r, nil, bad
	}
	r.AADVersion = vault.RecordAADv1
	if ver >= encV3 {
		r.AADVersion = vault.RecordAADv2
	}
	withExpiry := ver == encV2 || ver == encV4
	copy(r.KeyID[:], b[1:])
	r.Kind = format.Kind(b[1+len(r.KeyID)])
	if !r.Kind.Valid() {
		return r, nil, bad
	}
	r.Created = time.Unix(0, int64(binary.BigEndian.Uint64(b[2+len(r.KeyID):]))).UTC()
	if withExpiry {
		head += 8
		if len(b) < head {
			return r, nil, bad
		}
		exp := int64(binary.BigEndian.Uint64(b[head-12:]))
		if exp == 0 {
			return r, nil, bad // v2 or v4 without expiry is not canonical
		}
		r.Expires = time.Unix(0, exp).UTC()
	}
	tl := binary.BigEndian.Uint32(b[head-4:])
	rest := b[head:]
	if tl == 0 || uint64(tl)+1 > uint64(len(rest)) {
		return r, nil, bad
	}
	r.Token, rest = string(rest[:tl]), rest[tl:]
	ll := int(rest[0])
	rest = rest[1:]
	if (ll != 0 && ll != lookupSize) || len(rest) < ll+aead.Overhead {
		return r, nil, bad
	}
	if ll > 0 {
		r.Lookup = rest[:ll]
	}
	r.Sealed = rest[ll:]
	return r, group, nil
}

// badgerLogger routes badger's logs to slog. Badger logs file names and
// table statistics, never keys or values.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Debugf(f string, a ...any)   {}
