package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/crypto/envelope"
)

// KeyID identifies one subject data key. It is random, so it says nothing
// about the subject, and it is what blobs and records refer to.
type KeyID = envelope.KeyID

// SubjectKey is a subject's data key as stored: wrapped by the KEK.
type SubjectKey struct {
	ID      KeyID
	Wrapped []byte
	Created time.Time
	// Restricted is when processing of the subject was restricted (zero:
	// not restricted). Filled by SubjectKey and SubjectKeyByID only.
	Restricted time.Time
}

// LedgerEntry is one erased subject in the erasure ledger: a keyed hash
// of the subject id (never the id) and when it was erased.
type LedgerEntry struct {
	Hash     []byte // HMAC-SHA256 under the ledger key, 32 bytes
	ErasedAt time.Time
}

// Store is what every store must do for the vault: subject keys, records
// and their deterministic lookups, and the crypto-shred with its purge.
// Every write must be durable (synced) before it returns.
//
// What only some operations need is asked for through the optional
// interfaces below ([RightsStore], [LedgerStore], [KeyScanStore],
// [RecordBatchStore], [TokenCounter], [TokenSnapshotCounter], [ExclusiveStore], [SettledPurgeStore], [ConsentStore], [ErasureEventStore]),
// detected by type assertion where they
// are used: an operation whose capability the store lacks fails with
// [ErrUnsupported], and nothing else is affected. Backups, value-log
// garbage collection and size metrics are asked for by the packages that
// run them, through interfaces of their own. The shared suite in
// vault/storetest checks each interface a store implements.
type Store interface {
	// SubjectKey returns the subject's key, or ErrNotFound.
	SubjectKey(ctx context.Context, subject string) (SubjectKey, error)
	// SubjectKeyByID returns the subject owning key id and its key, or
	// ErrNotFound when no such key exists (never made, or shredded).
	SubjectKeyByID(ctx context.Context, id KeyID) (string, SubjectKey, error)
	// CreateSubjectKey stores sk for subject if the subject has no key, and
	// returns the key that is stored afterwards: sk, or the one a
	// concurrent caller stored first.
	CreateSubjectKey(ctx context.Context, subject string, sk SubjectKey) (SubjectKey, error)

	// PutRecords atomically stores records (and their lookup entries) for
	// the subject whose key is id. It stores nothing and returns
	//   - a *CollisionError when a token or lookup key is already taken
	//     (including by another record of the same batch); tokens are
	//     unique across every kind and subject;
	//   - ErrErased when the subject's key is no longer id (erased meanwhile).
	PutRecords(ctx context.Context, subject string, id KeyID, recs []Record) error
	// Record returns the record for token, or ErrNotFound.
	Record(ctx context.Context, token string) (Record, error)
	// DeleteRecord deletes one record with everything that points at it
	// (its lookup entry and any index a capability keeps, such as the
	// expiry index of [RightsStore]). ErrNotFound if there is no such
	// record.
	DeleteRecord(ctx context.Context, token string) error
	// Lookup returns the token stored under a deterministic lookup key, or
	// ErrNotFound.
	Lookup(ctx context.Context, id KeyID, lookup []byte) (string, error)

	// ShredSubject durably deletes the subject's key and restriction mark
	// (the crypto-shred), records that its data still has to be purged and,
	// when ledger.Hash is set, adds ledger to the erasure ledger, all in
	// one transaction. ErrNotFound if the subject has no key.
	ShredSubject(ctx context.Context, subject string, ledger LedgerEntry) (KeyID, error)
	// PurgeKey deletes every record and lookup made under a shredded key,
	// then its pending-purge mark. Safe to repeat.
	PurgeKey(ctx context.Context, id KeyID) (PurgeCounts, error)
	// PendingPurges lists shredded keys whose purge has not finished (a
	// crash between shred and purge).
	PendingPurges(ctx context.Context) ([]KeyID, error)
}

// RightsStore is the optional Store capability behind data-subject rights
// other than erasure: export, rectification, restriction and retention.
type RightsStore interface {
	// KeyRecords lists up to limit records made under key id, in a stable
	// store-defined order, starting after the record whose Cursor is after
	// ("" for the start): a resumable scan for export. Each record it
	// returns has its Cursor set. A listing resumed from a cursor lists
	// every record that was there throughout once, even when the record
	// the cursor came from was deleted meanwhile. An after the store did
	// not make is ErrInvalidArgument.
	KeyRecords(ctx context.Context, id KeyID, after string, limit int) ([]Record, error)
	// ReplaceRecord stores r in place of the record with the same token
	// under key id (rectification). The old record's lookup entry is
	// removed, r.Lookup (if set) added, and the expiry index follows
	// r.Expires. It stores nothing and returns ErrNotFound when there is
	// no such record under id, ErrErased when the subject's key is no
	// longer id, and a *CollisionError (Lookup set) when r.Lookup belongs
	// to another token.
	ReplaceRecord(ctx context.Context, subject string, id KeyID, r Record) error
	// SetRestricted marks the subject's processing as restricted since
	// the given time, or lifts the mark when since is zero. ErrNotFound if
	// the subject has no key. SubjectKey and SubjectKeyByID report the
	// mark ([SubjectKey.Restricted]).
	SetRestricted(ctx context.Context, subject string, since time.Time) error
	// PurgeExpired deletes up to limit records whose expiry is at or before
	// now (found through an expiry index, not a scan), and returns how many.
	PurgeExpired(ctx context.Context, now time.Time, limit int) (int, error)
}

// LedgerStore is the optional Store capability of reading and merging the
// erasure ledger that [Store.ShredSubject] writes to: the vault's ledger
// export, and the restore, which hands a restored store the live ledger.
type LedgerStore interface {
	// LedgerEntries lists up to limit ledger entries in hash order, after
	// the hash after (nil for the start).
	LedgerEntries(ctx context.Context, after []byte, limit int) ([]LedgerEntry, error)
	// PutLedgerEntries adds entries to the erasure ledger; an existing
	// entry keeps the later erasure time.
	PutLedgerEntries(ctx context.Context, entries []LedgerEntry) error
}

// KeyScanStore is the optional Store capability of walking every stored
// subject key: KEK status, rewrap and retirement (kekadmin.go), and the
// start-up checks of the KEK against the stored keys.
type KeyScanStore interface {
	// SubjectKeys lists up to limit subject keys in a stable store-defined
	// order (a store holds no subject id in the clear, so not the ids'
	// order), starting after the subject named after ("" for the start):
	// a resumable scan for KEK rewrapping.
	SubjectKeys(ctx context.Context, after string, limit int) ([]SubjectEntry, error)
	// ReplaceWrapped stores a new wrapping of the subject's key (after a
	// KEK rotation). It fails with ErrErased if the subject's key is no
	// longer id.
	ReplaceWrapped(ctx context.Context, subject string, id KeyID, wrapped []byte) error
	// HasSubjectKeys reports whether any subject key (or pending purge) is
	// stored: a data directory with keys must not get a new keyring.
	HasSubjectKeys(ctx context.Context) (bool, error)
}

// RecordBatchStore is an optional Store capability: RecordsOf reads the
// records of several tokens in one read transaction, where [Store.Record]
// takes one per token (a tokenize of 100 fields checks 100 values, most of
// which have no record; the per-read overhead was a visible share of its
// CPU). It calls found, in the order of tokens, for each token that has a
// record, with its index in tokens; tokens without one are skipped. An
// error from found ends the read and is returned.
type RecordBatchStore interface {
	RecordsOf(ctx context.Context, tokens []string, found func(i int, r Record) error) error
}

// LookupBatchStore is an optional Store capability: LookupsOf reads, in
// one read transaction, the records that the deterministic lookups of key
// id lead to, where [Store.Lookup] and then [Store.Record] take two per
// field (a deterministic field whose value was tokenized before: the
// usual case for an e-mail tokenized at every order). It calls found, in
// the order of lookups, for each lookup that leads to a record, with its
// index in lookups; the others are skipped. An error from found ends the
// read and is returned.
type LookupBatchStore interface {
	LookupsOf(ctx context.Context, id KeyID, lookups [][]byte, found func(i int, r Record) error) error
}

// TokenCounter is an optional Store capability: counting stored tokens
// (once, at start; the vault keeps the count current afterwards).
type TokenCounter interface {
	CountTokens(ctx context.Context) (int64, error)
}

// TokenSnapshotCounter is an optional Store capability that lets the vault
// count in the background instead of at start (a key-only scan of 10 M
// records takes seconds). TokenCountSnapshot pins a snapshot of the store
// and returns a count of the token records in it: writes committed after
// TokenCountSnapshot returned are not in the count, whenever it runs, so
// the vault adds exactly the writes it makes afterwards.
//
// Each call of count goes on with the same scan: it counts up to limit
// more records (limit <= 0: all the rest) and returns the total so far
// and whether the scan is done. The caller must call it until it is done
// or fails (either releases the snapshot; a store may wait for that when
// it closes); it stops early when ctx ends or the store is closed.
type TokenSnapshotCounter interface {
	TokenCountSnapshot(ctx context.Context) (count func(ctx context.Context, limit int64) (total int64, done bool, err error), err error)
}

// ExclusiveStore is an optional Store capability. Exclusive reports that
// nothing but this process can change the store (badger locks its
// directory), so every erasure and restriction goes through this Vault.
// The Vault then answers "which key does this subject have, is it
// restricted" from its cache, without a store read per request. A store
// that several servers share must not report true.
type ExclusiveStore interface {
	Exclusive() bool
}

// SettledPurgeStore is an optional capability of a store that several
// servers share (not [ExclusiveStore]): its pending purges whose shred is
// at least age old, by the store's clock. Another server's erasure may be
// between its shred and its own purge; resuming that purge would delete
// the records first, and the erasure's receipt would count none of them.
type SettledPurgeStore interface {
	PendingPurgesBefore(ctx context.Context, age time.Duration) ([]KeyID, error)
}

// RecordKeyStore is an optional Store capability for a store whose every
// read is a round trip to a database (pgstore): it reads a record and its
// subject's key together, so that a reveal on a shared store makes one
// round trip and still sees an erasure or restriction made through
// another server, in the same statement. A store in memory or on local
// disk has no use for it.
type RecordKeyStore interface {
	// RecordWithKey returns the record for token and, read in the same
	// statement, the subject owning the record's key and that key, with
	// its restriction mark (as SubjectKeyByID). It returns ErrNotFound if
	// there is no such record, and the record with ErrErased if its key
	// no longer exists (shredded).
	RecordWithKey(ctx context.Context, token string) (Record, string, SubjectKey, error)
}

// capability returns v's store as a C, or an ErrUnsupported naming what
// the store cannot do.
func capability[C any](v *Vault, what string) (C, error) {
	c, ok := v.store.(C)
	if !ok {
		return c, &FieldError{Field: "store", Reason: "the store does not support " + what, Err: ErrUnsupported}
	}
	return c, nil
}

// SubjectEntry is one subject and its key.
type SubjectEntry struct {
	Subject string
	Key     SubjectKey
}

// PurgeCounts says what a purge removed.
type PurgeCounts struct {
	Records int64
	Lookups int64
}

// CollisionError reports which record of a PutRecords batch clashed.
type CollisionError struct {
	Index  int  // index into the recs slice
	Lookup bool // the lookup key clashed (a concurrent deterministic tokenize), not the token
}

func (e *CollisionError) Error() string {
	what := "token"
	if e.Lookup {
		what = "lookup key"
	}
	return fmt.Sprintf("store: record %d: %s already exists", e.Index, what)
}

// Is lets errors.Is(err, ErrCollision) match.
func (e *CollisionError) Is(target error) bool { return target == ErrCollision }

// ErrCollision matches every *CollisionError.
var ErrCollision = errors.New("store: collision")

// Subject ids at rest. A store holds no subject id in the clear (an
// erased subject's id would otherwise outlive the erasure in deletion
// markers, old files and every backup): it addresses a subject by
// [StoreSubjectHash] and keeps the id itself, which the vault needs back
// (a blob or record names only a key id), sealed under [StoreSealKey].
// Both come from the vault's ledger key under labels of their own, so
// that every store of a vault (and every replica) computes the same
// hashes, and the key is the one already kept and backed up with the
// keyring (no new key file to lose).
const (
	storeHashLabel = "tokenvault/store/subject-id/v1"
	storeSealLabel = "tokenvault/store/subject-seal/v1"
)

// StoreSubjectHash is the keyed hash (HMAC-SHA256 under the ledger key,
// a label distinct from the ledger's own) by which stores address a
// subject.
func StoreSubjectHash(ledgerKey *aead.Key, subject string) ([]byte, error) {
	return ledgerKey.MAC([]byte(storeHashLabel), []byte(subject))
}

// StoreSealKey is the key (HKDF from the ledger key) that seals subject
// ids in stores. The caller zeroes it.
func StoreSealKey(ledgerKey *aead.Key) (*aead.Key, error) {
	return ledgerKey.Derive(storeSealLabel)
}

// Consent per purpose and erasure events (issue 16: consent.go,
// erasures.go).

// ConsentEntry is one entry of a subject's consent history as a store
// keeps it: opaque to the store, sealed by the vault under a key derived
// from the subject's data key, so that the crypto-shred destroys the
// history with everything else.
type ConsentEntry struct {
	// Tag is the vault's keyed hash of the purpose (32 bytes, keyed by the
	// subject's data key): the store finds the latest entry of a purpose
	// without learning which purpose it is.
	Tag    []byte
	Sealed []byte
}

// ConsentStore is the optional Store capability behind consent per
// purpose. Entries live under the subject's key id, and PurgeKey deletes
// them with the key's records. Reads go to the store on every reveal (no
// cache), so a withdrawal on one server holds at once on every server
// sharing the store.
type ConsentStore interface {
	// AppendConsent appends e to the consent history under key id and
	// makes it the latest entry for e.Tag, in one durable transaction. It
	// stores nothing and returns ErrErased when the subject's key is no
	// longer id.
	AppendConsent(ctx context.Context, subject string, id KeyID, e ConsentEntry) error
	// LatestConsent returns the latest entry for tag under key id, or
	// ErrNotFound.
	LatestConsent(ctx context.Context, id KeyID, tag []byte) (ConsentEntry, error)
	// ConsentHistory lists up to limit entries under key id in the order
	// they were appended, after the after-th (0 for the start).
	ConsentHistory(ctx context.Context, id KeyID, after uint64, limit int) ([]ConsentEntry, error)
}

// ErasureEvent is what a store keeps of one erasure for its consumers
// (erasures.go). The subject id is sealed by the store (under
// [StoreSealKey]) and dropped with the receipt once every registered
// consumer acknowledged the event or it is older than the retention.
type ErasureEvent struct {
	Seq      uint64 // commit order, from 1; set by the store
	Subject  string // "" once dropped
	ErasedAt time.Time
	KeyID    KeyID
	// Receipt is the signed receipt file, attached after the purge (nil
	// until then, without a receipt key, or once dropped).
	Receipt []byte
	// Holds (ShredErasure's input only) are the holds to schedule in the
	// erasure's transaction, as [HoldStore.ShredSubjectHolding] does; only
	// a store that is also a HoldStore is given any. With holds the
	// subject may have no key of its own (KeyID is then zero).
	Holds []Hold
}

// ErasureEventStore is the optional Store capability behind erasure
// events. ShredErasure is [Store.ShredSubject] plus the event, in the
// same transaction: an erasure is never committed without its event.
type ErasureEventStore interface {
	// ShredErasure is ShredSubject, also appending ev (Seq and KeyID
	// filled by the store) to the event log; it returns the event.
	ShredErasure(ctx context.Context, subject string, ledger LedgerEntry, ev ErasureEvent) (ErasureEvent, error)
	// AttachReceipt stores the signed receipt in event seq (no-op if the
	// event is gone or its subject id dropped).
	AttachReceipt(ctx context.Context, seq uint64, receipt []byte) error
	// RegisterConsumer creates consumer's cursor if it has none, before
	// every retained event (a new consumer gets everything still kept).
	RegisterConsumer(ctx context.Context, consumer string) error
	// Consumers lists every registered consumer and its cursor (the last
	// sequence acknowledged).
	Consumers(ctx context.Context) (map[string]uint64, error)
	// ErasureEvents lists up to limit events after sequence after, in
	// commit order.
	ErasureEvents(ctx context.Context, after uint64, limit int) ([]ErasureEvent, error)
	// AckErasures moves consumer's cursor to seq (never back). It fails
	// with ErrNotFound for an unregistered consumer and with
	// ErrInvalidArgument for a seq beyond the last event.
	AckErasures(ctx context.Context, consumer string, seq uint64) error
	// TrimErasureEvents deletes every event all registered consumers
	// acknowledged, and drops the subject id and receipt of events erased
	// before cutoff; it returns how many events it changed.
	TrimErasureEvents(ctx context.Context, cutoff time.Time) (int, error)
}

// HoldStore is the optional Store capability behind legal holds at
// erasure (holds.go). A hold key is an ordinary subject key of a derived
// pseudo-subject ([HoldSubject]), so the core methods store and shred it;
// this interface adds its schedule: when the real subject is erased, each
// of its hold keys gets a durable entry (until when it is held, under
// which class), written in the erasure's own transaction, and the
// maintenance loop shreds due holds through ShredHold.
type HoldStore interface {
	// ShredSubjectHolding is [Store.ShredSubject] that also schedules
	// holds (hold key id, class, until) in the same transaction. The
	// subject may have no key of its own when holds is not empty (all its
	// data was held); the returned id is then zero. A hold whose key no
	// longer exists, or which is already scheduled, is skipped.
	// ErrNotFound if the subject has no key and no hold is scheduled.
	ShredSubjectHolding(ctx context.Context, subject string, ledger LedgerEntry, holds []Hold) (KeyID, error)
	// HoldOf returns the schedule of hold key id, ErrNotFound if none
	// (its subject is not erased, or the hold was shredded).
	HoldOf(ctx context.Context, id KeyID) (Hold, error)
	// DueHolds lists up to limit scheduled holds whose Until is at or
	// before now, earliest first (through a time index, not a scan).
	DueHolds(ctx context.Context, now time.Time, limit int) ([]Hold, error)
	// ShredHold is the crypto-shred of one scheduled hold, in one
	// transaction: the hold key and its schedule entry are deleted, its
	// data marked for purge ([Store.PendingPurges], [Store.PurgeKey]),
	// ledger (if its Hash is set) added to the erasure ledger, and receipt
	// kept for [HoldStore.HoldReceipts] under the real subject (hashed).
	// ErrNotFound if id has no scheduled hold (already shredded).
	ShredHold(ctx context.Context, id KeyID, ledger LedgerEntry, subject string, receipt []byte) error
	// HoldReceipts returns the receipts ShredHold kept for subject, in the
	// order they were made.
	HoldReceipts(ctx context.Context, subject string) ([][]byte, error)
}

// Hold is one scheduled hold: a hold key whose subject was erased.
type Hold struct {
	ID       KeyID
	Class    string
	ErasedAt time.Time // the real subject's erasure
	Until    time.Time // when the hold ends and its key is shredded
}
