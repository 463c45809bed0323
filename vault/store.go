package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/crypto/envelope"
	"github.com/tokenvault/tokenvault/vault/format"
)

// KeyID identifies one subject data key. It is random, so it says nothing
// about the subject, and it is what blobs and records refer to.
type KeyID = envelope.KeyID

// SubjectKey is a subject's data key as stored: wrapped by the KEK.
type SubjectKey struct {
	ID      KeyID
	Wrapped []byte
	Created time.Time
}

// Record is one tokenized value as stored. Sealed is the value encrypted
// under the subject's record key, bound to token, subject and kind.
type Record struct {
	Token   string
	KeyID   KeyID
	Kind    format.Kind
	Created time.Time
	// Lookup is the deterministic lookup key (nil for random tokens), kept
	// so the lookup entry can be found from the record.
	Lookup []byte
	Sealed []byte
}

// Store persists subject keys, records and deterministic lookups. Every
// write must be durable (synced) before it returns. Implementations are
// checked by the shared suite in vault/storetest.
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
	//     (including by another record of the same batch);
	//   - ErrErased when the subject's key is no longer id (erased meanwhile).
	PutRecords(ctx context.Context, subject string, id KeyID, recs []Record) error
	// Record returns the record for token, or ErrNotFound.
	Record(ctx context.Context, token string) (Record, error)
	// Lookup returns the token stored under a deterministic lookup key, or
	// ErrNotFound.
	Lookup(ctx context.Context, id KeyID, lookup []byte) (string, error)
	// ShredSubject durably deletes the subject's key (the crypto-shred)
	// and records that its data still has to be purged. ErrNotFound if the
	// subject has no key.
	ShredSubject(ctx context.Context, subject string) (KeyID, error)
	// PurgeKey deletes every record and lookup made under a shredded key,
	// then its pending-purge mark. Safe to repeat.
	PurgeKey(ctx context.Context, id KeyID) (PurgeCounts, error)
	// PendingPurges lists shredded keys whose purge has not finished (a
	// crash between shred and purge).
	PendingPurges(ctx context.Context) ([]KeyID, error)
	// SubjectKeys lists up to limit subject keys in subject order, starting
	// after the subject named after ("" for the start): a resumable scan
	// for KEK rewrapping.
	SubjectKeys(ctx context.Context, after string, limit int) ([]SubjectEntry, error)
	// ReplaceWrapped stores a new wrapping of the subject's key (after a
	// KEK rotation). It fails with ErrErased if the subject's key is no
	// longer id.
	ReplaceWrapped(ctx context.Context, subject string, id KeyID, wrapped []byte) error
	// HasSubjectKeys reports whether any subject key (or pending purge) is
	// stored: a data directory with keys must not get a new keyring.
	HasSubjectKeys(ctx context.Context) (bool, error)
	Close() error
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
