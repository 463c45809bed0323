// Package vault is tokenvault's domain: tokenize, reveal, mask,
// field-encrypt and crypto-shred personal data, one data key per subject.
//
// It knows nothing of gRPC. Its dependencies are two small interfaces: a
// [Store] (the embedded one is [github.com/tokenvault/tokenvault/vault/badgerstore]),
// with optional capabilities detected where they are used (store.go), and
// a KEK ([github.com/tokenvault/tokenvault/crypto/kek.Wrapper]) that wraps
// subject data keys.
//
// # Keys
//
// Each data subject gets a random 256-bit data key (DEK) on first use,
// stored only wrapped by the KEK, bound to the subject and key id
// ([KeyBinding]). Three subkeys are derived from it with HKDF: one seals
// token records (AES-256-GCM, bound to token, subject, key id and kind,
// and to the record's creation, expiry and lookup key: [RecordAADv2]), one
// seals field-encryption blobs (bound to subject and the caller's
// context), one keys deterministic lookups (HMAC-SHA256), so that
// destroying the DEK also unlinks every deterministic token.
//
// # Erasure
//
// [Vault.EraseSubject] first deletes the wrapped DEK (a synced write: that
// is the crypto-shred), then removes the subject's records. A crash in
// between leaves records nobody can decrypt, and the purge resumes at the
// next start ([New]).
//
// # Errors
//
// Errors unwrap to the sentinels in errors.go; request problems are
// [*FieldError]s naming the request field. No error text contains a value,
// a token or a key.
package vault

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek"
	"github.com/tokenvault/tokenvault/vault/format"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// Limits, enforced on every call (documented in the proto and README).
const (
	MaxBatch      = 1000
	MaxValueBytes = 64 << 10
	MaxIDBytes    = 256 // subject ids, purposes and contexts
)

// Options tune a Vault. Zero values mean the defaults.
type Options struct {
	// CacheSize bounds how many subjects' keys are cached (default 100,000).
	CacheSize int
	// CacheTTL bounds how long unwrapped keys stay cached (default 10m).
	CacheTTL time.Duration
	Logger   *slog.Logger
	// Rand is the randomness for tokens (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnKEK, if set, is told about every call to the KEK on the request
	// path ("wrap", "unwrap"): for metrics, without the domain knowing
	// about them.
	OnKEK func(op string, d time.Duration, err error)
	// Rights configures data-subject rights: erasure ledger, signed
	// receipts, retention defaults (rights.go).
	Rights RightsOptions
	// ConsentRequired reports whether a (trimmed) purpose rests on
	// consent (consent.go); nil: none does. It is asked on every reveal,
	// so a reloaded policy takes effect at once.
	ConsentRequired func(purpose string) bool
	// Erasures configures erasure events (erasures.go).
	Erasures ErasureOptions
	// Holds are the legal hold classes by name (holds.go).
	Holds map[string]HoldClass
	// Volatile configures volatile tokens (card security codes,
	// volatile.go).
	Volatile VolatileOptions
	// CountFirst is how many stored tokens New counts before it returns
	// and counts the rest in the background (default 100,000; negative:
	// none; see countTokens).
	CountFirst int64
}

// Vault is the domain service. It is safe for concurrent use.
type Vault struct {
	store Store
	kek   kek.Wrapper
	cache *keyCache
	log   *slog.Logger
	rand  io.Reader
	now   func() time.Time
	onKEK func(op string, d time.Duration, err error)
	// exclusive: the store is this process's alone, so the key cache is
	// the authority on subjects' keys (see keyCache).
	exclusive bool

	tokens        atomic.Int64 // tokens stored (see Stats)
	tokensCreated atomic.Int64
	erasures      atomic.Int64
	recordsPurged atomic.Int64
	// tokensCounted: tokens holds the count (see Stats); counting: a
	// background count (countTokens) is running, and tokens holds the
	// writes made since its snapshot.
	tokensCounted atomic.Bool
	counting      atomic.Bool
	stopCount     context.CancelFunc
	countDone     chan struct{}

	rights  RightsOptions
	consent func(purpose string) bool // see Options.ConsentRequired

	events    erasureLog // erasures.go
	eventOpts ErasureOptions
	holds     map[string]HoldClass
	vol       *volatileArena // volatile tokens (volatile.go)
}

// Stats are the vault's counters, for metrics.
type Stats struct {
	// TokensStored is the number of token records in the store, or -1 if
	// the store cannot count them or (TokensCounting) has not finished yet.
	TokensStored int64
	// TokensCounting: the count of the stored tokens is still running
	// (in the background, after a start on a large store).
	TokensCounting bool
	TokensCreated  int64 // since start
	Erasures       int64 // since start
	RecordsPurged  int64 // since start, by erasures
	CacheEntries   int
	CacheHits      int64
	CacheMisses    int64
	CacheEvicted   int64
	Volatile       VolatileStats
}

// Stats returns the current counters.
func (v *Vault) Stats() Stats {
	st := Stats{
		TokensStored: -1, TokensCreated: v.tokensCreated.Load(), Erasures: v.erasures.Load(),
		RecordsPurged: v.recordsPurged.Load(), CacheEntries: v.cache.len(),
		CacheHits: v.cache.hits.Load(), CacheMisses: v.cache.misses.Load(), CacheEvicted: v.cache.evictions.Load(),
		Volatile: v.vol.stats(),
	}
	// counted before tokens: once it is true, tokens includes the count.
	if v.tokensCounted.Load() {
		st.TokensStored = v.tokens.Load()
	}
	st.TokensCounting = v.counting.Load()
	return st
}

// New returns a Vault over store and kek. It first finishes any erasure a
// crash interrupted (see [Vault.EraseSubject]).
func New(ctx context.Context, store Store, wrapper kek.Wrapper, opts Options) (*Vault, error) {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 100_000
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnKEK == nil {
		opts.OnKEK = func(string, time.Duration, error) {}
	}
	v := &Vault{
		store: store, kek: wrapper, log: opts.Logger, rand: opts.Rand, now: opts.Now, onKEK: opts.OnKEK,
		cache:  newKeyCache(opts.CacheSize, opts.CacheTTL, opts.Now),
		rights: opts.Rights, consent: opts.ConsentRequired, eventOpts: opts.Erasures, holds: opts.Holds,
	}
	if es, ok := store.(ExclusiveStore); ok {
		v.exclusive = es.Exclusive()
	}
	if err := opts.Rights.validate(); err != nil {
		return nil, err
	}
	if err := validateHolds(opts.Holds); err != nil {
		return nil, err
	}
	vol, err := newVolatileArena(opts.Volatile, opts.Now, opts.Logger, func() (string, error) { return format.NewHolderID(opts.Rand) })
	if err != nil {
		return nil, err
	}
	v.vol = vol
	if _, err := v.ResumePurges(ctx); err != nil {
		return nil, err
	}
	if err := v.countTokens(ctx, opts.CountFirst); err != nil {
		return nil, err
	}
	return v, nil
}

// defaultCountFirst is how many token records New counts before it
// returns: a store that small is counted at start (the first metrics
// scrape is exact), a larger one (a key-only scan of 10 M records takes
// seconds) is counted on in the background. About 50 ms here.
const defaultCountFirst = 100_000

// countTokens counts the stored tokens. With a snapshot counter, what
// first does not count it counts in the background, which is exact: the
// snapshot is pinned here, before New returns and so before any write of
// this Vault other than the purges above, and tokens, reset with it,
// gathers every write made after it; the count adds what the snapshot
// held. Nothing is persisted, so a crash at any point leaves nothing to
// repair: the next start counts again.
func (v *Vault) countTokens(ctx context.Context, first int64) error {
	if first == 0 {
		first = defaultCountFirst
	}
	if sc, ok := v.store.(TokenSnapshotCounter); ok {
		count, err := sc.TokenCountSnapshot(ctx)
		if err != nil {
			return fmt.Errorf("vault: counting tokens: %w", err)
		}
		v.tokens.Store(0)
		var total int64
		done := false
		if first > 0 {
			if total, done, err = count(ctx, first); err != nil {
				return fmt.Errorf("vault: counting tokens: %w", err)
			}
		}
		v.counting.Store(true)
		if done {
			v.tokensDone(total, true, nil)
			return nil
		}
		v.log.Info("counting stored tokens in the background; tokenvault_tokens_stored is -1 until done")
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		v.stopCount, v.countDone = cancel, make(chan struct{})
		start := time.Now()
		go func() {
			defer close(v.countDone)
			if v.tokensDone(count(cctx, 0)) {
				v.log.Info("counted stored tokens", "duration", time.Since(start).Round(time.Millisecond))
			}
		}()
		return nil
	}
	if tc, ok := v.store.(TokenCounter); ok {
		n, err := tc.CountTokens(ctx)
		if err != nil {
			return fmt.Errorf("vault: counting tokens: %w", err)
		}
		v.tokens.Store(n)
		v.tokensCounted.Store(true)
	}
	return nil
}

// tokensDone ends a snapshot count: it adds the snapshot's total to the
// writes counted since, and reports whether the count succeeded.
func (v *Vault) tokensDone(total int64, done bool, err error) bool {
	defer v.counting.Store(false)
	if err == nil && !done {
		err = errors.New("the count stopped before the end")
	}
	if err != nil && !errors.Is(err, context.Canceled) { // canceled: by Close
		v.log.Error("counting stored tokens failed: tokenvault_tokens_stored stays -1 until a restart", "err", err)
	}
	if err != nil {
		return false
	}
	v.tokens.Add(total)
	v.tokensCounted.Store(true)
	return true
}

// resumeAfter is how old a shared store's pending purge must be before
// ResumePurges takes it over: an erasure purges its records right after
// its shred, in batches, so one still pending after this long was left by
// a server that stopped. Its records are unreadable meanwhile (the key is
// gone); only their deletion waits.
const resumeAfter = 10 * time.Minute

// ResumePurges finishes erasures whose purge did not (a crash between
// shred and purge) and returns how many. New calls it; a server on a
// store that other servers share also calls it while running, for the
// erasures of a server that crashed meanwhile.
func (v *Vault) ResumePurges(ctx context.Context) (int, error) {
	list := v.store.PendingPurges
	if sp, ok := v.store.(SettledPurgeStore); ok && !v.exclusive {
		// On a shared store, only erasures no server is still finishing
		// (SettledPurgeStore).
		list = func(ctx context.Context) ([]KeyID, error) { return sp.PendingPurgesBefore(ctx, resumeAfter) }
	}
	pending, err := list(ctx)
	if err != nil {
		return 0, fmt.Errorf("vault: listing interrupted erasures: %w", err)
	}
	for i, id := range pending {
		c, err := v.store.PurgeKey(ctx, id)
		if err != nil {
			return i, fmt.Errorf("vault: resuming interrupted erasure: %w", err)
		}
		v.recordsPurged.Add(c.Records)
		v.tokens.Add(-c.Records)
		v.log.Info("resumed interrupted erasure", "records", c.Records, "lookups", c.Lookups)
	}
	return len(pending), nil
}

// Close stops a background token count, and zeroes cached keys and the
// ledger key. It does not close the store.
func (v *Vault) Close() {
	if v.stopCount != nil {
		v.stopCount()
		<-v.countDone
	}
	v.cache.purge()
	v.vol.close()
	if v.rights.LedgerKey != nil {
		v.rights.LedgerKey.Zero()
	}
}

// CachedKeys reports how many subjects' keys are cached (for metrics and
// tests).
func (v *Vault) CachedKeys() int { return v.cache.len() }

// EraseSubject crypto-shreds subject: the wrapped DEK is deleted (synced)
// and then evicted from the cache, and the subject entered in the erasure
// ledger, in one transaction; then the subject's records and lookups are
// purged. ErrNotFound if the vault holds no key for subject.
//
// It returns the erasure receipt and, when the vault has a receipt key,
// the signed receipt file ([receipt.Receipt.Marshal]; nil otherwise). If
// the purge fails after the shred, the receipt (unsigned: the erasure is
// not finished) comes with the error.
func (v *Vault) EraseSubject(ctx context.Context, subject string) (receipt.Receipt, []byte, error) {
	if err := checkID("subject_id", subject); err != nil {
		return receipt.Receipt{}, nil, err
	}
	r := receipt.Receipt{Subject: subject, ErasedAt: v.now().UTC()}
	entry, err := v.ledgerEntry(subject, r.ErasedAt)
	if err != nil {
		return receipt.Receipt{}, nil, err
	}
	id, seq, held, err := v.shred(ctx, subject, entry, r.ErasedAt) // with its holds and its erasure event (holds.go, erasures.go)
	r.Held = held
	// Invalidate even on error: the shred may have committed anyway.
	v.cache.invalidate(subject, id)
	if id != (KeyID{}) {
		v.vol.dropKey(id) // the subject's volatile tokens go at once
	}
	if errors.Is(err, ErrNotFound) {
		// Not "no data is held": data kept under a legal hold of an
		// erasure made before stays (and is exported) until the hold ends.
		return receipt.Receipt{}, nil, &FieldError{Field: "subject_id", Err: ErrNotFound,
			Reason: "nothing to erase: the vault has no key for this subject (unknown, or erased already; what a hold keeps stays until the hold ends)"}
	}
	if err != nil {
		return receipt.Receipt{}, nil, fmt.Errorf("shredding subject key: %w", err)
	}
	v.erasures.Add(1)
	if id == (KeyID{}) { // only held data: nothing to purge now
		r, signed := v.sign(r)
		return r, signed, nil
	}
	// The shred is done and cannot be undone; finish the purge even if the
	// caller gives up waiting.
	c, err := v.store.PurgeKey(context.WithoutCancel(ctx), id)
	r.Records, r.Lookups = c.Records, c.Lookups
	v.recordsPurged.Add(c.Records)
	v.tokens.Add(-c.Records)
	if err != nil {
		// The data is already unreadable; the purge resumes at next start.
		v.erasureDone(ctx, seq, nil)
		return r, nil, fmt.Errorf("subject key destroyed, but purging its records failed (resumed at next start): %w", err)
	}
	r, signed := v.sign(r)
	v.erasureDone(ctx, seq, signed)
	return r, signed, nil
}
