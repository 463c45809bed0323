package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Backups.
//
// internal/backup frames a backup payload and encrypts and signs it; the
// store supplies the frames (a backup.Source) and reads them back into a
// new directory (a backup.Loader). Both methods use only plain and vault
// types, so this package does not depend on the backup package.
//
// A frame is badger's own backup format, the frames of DB.Backup:
//
//	length (8, little endian) | badger KVList (protobuf)
//
// with the store's key layout (badgerstore.go), deletions included, so
// that incremental payloads replay on top of earlier ones. It is the
// payload encoding of every tokenvault store (another store writes and
// reads the same entries), so a badger backup is also a migration path.
//
// Restoring is not badger's DB.Load alone: Load drops, frame by frame,
// every entry that belongs to a key id the caller names (subjects erased
// after the backup was taken), so their wrapped keys and sealed records
// never reach the restored directory's files at all.

// ErrBadFrame: a backup frame does not decode (its text is the one
// restores reported before the frame moved into internal/backup).
var ErrBadFrame = errors.New("backup payload is truncated or corrupt")

// Snapshot writes the frames of everything changed after version since
// (0: everything) to w and returns the since of the next incremental
// backup. It runs on a live store: badger streams from one snapshot.
func (s *Store) Snapshot(w io.Writer, since uint64) (uint64, error) {
	last, err := s.db.Backup(w, since)
	if err != nil {
		return 0, fmt.Errorf("badgerstore: backup: %w", err)
	}
	// Badger's iterator keeps versions strictly above SinceTs (its doc
	// comment on Backup says to add 1, which would skip a version): the
	// next backup starts after the last version this one holds.
	return max(last, since), nil
}

// BackupSizeEstimate is the size of the store's files, a bound for
// progress reports.
func (s *Store) BackupSizeEstimate() int64 {
	lsm, vlog := s.db.EstimateSize(nil)
	return int64(lsm + vlog)
}

// decodeFrame parses one frame, calling fn for every entry.
func decodeFrame(frame []byte, fn func(*pb.KV) error) error {
	var list pb.KVList
	if err := proto.Unmarshal(frame, &list); err != nil {
		return fmt.Errorf("%w: frame does not parse", ErrBadFrame)
	}
	for _, kv := range list.Kv {
		if err := fn(kv); err != nil {
			return err
		}
	}
	return nil
}

// bitDelete is badger's deletion marker in pb.KV.Meta (badger's value.go);
// badger's backup format carries it, and deletions keep no value.
const bitDelete = 1 << 0

func deleted(kv *pb.KV) bool { return len(kv.Meta) > 0 && kv.Meta[0]&bitDelete != 0 }

// Scan is [ScanFrame] with the loader's ledger key ([Loader.UseLedgerKey]):
// the restore uses it to find erased subjects before anything is written.
func (l *Loader) Scan(frame []byte, onKey func(subject string, sk vault.SubjectKey), onLedger func(vault.LedgerEntry)) error {
	return scanFrame(l.ids, frame, onKey, onLedger)
}

// ScanFrame calls onKey for every subject key and onLedger for every
// erasure-ledger entry a frame stores (deletions are skipped), in either
// layout: a layout-2 frame's subject ids are opened with ledgerKey (the
// IDKey of the store that wrote it; nil as for [Options.IDKey]).
func ScanFrame(ledgerKey *aead.Key, frame []byte, onKey func(subject string, sk vault.SubjectKey), onLedger func(vault.LedgerEntry)) error {
	ids, err := newIDKeys(ledgerKey)
	if err != nil {
		return err
	}
	defer ids.Zero()
	return scanFrame(ids, frame, onKey, onLedger)
}

func scanFrame(ids *vault.StoreIDs, frame []byte, onKey func(subject string, sk vault.SubjectKey), onLedger func(vault.LedgerEntry)) error {
	return decodeFrame(frame, func(kv *pb.KV) error {
		if len(kv.Key) < 2 || kv.Key[1] != '/' || deleted(kv) {
			return nil
		}
		switch kv.Key[0] {
		case pKey: // layout 1: the id in the key
			sk, _, err := decodeSubjectKey(kv.Value)
			if err != nil {
				return fmt.Errorf("%w: subject key entry", ErrBadFrame)
			}
			onKey(string(kv.Key[2:]), sk)
		case pHashed:
			sk, sealed, err := decodeSubjectKey(kv.Value)
			if err != nil || sealed == nil {
				return fmt.Errorf("%w: subject key entry", ErrBadFrame)
			}
			subject, err := ids.OpenSubject(sk.ID, sealed)
			if err != nil {
				// Not ErrBadFrame: a wrong key, most likely.
				return fmt.Errorf("a subject key entry does not open with the ledger key (a backup of a vault with another ledger key?): %w", err)
			}
			onKey(subject, sk)
		case pLedger:
			at, err := decodeTime(kv.Value, "ledger entry")
			if err != nil || len(kv.Key) != 2+ledgerHashSize {
				return fmt.Errorf("%w: ledger entry", ErrBadFrame)
			}
			onLedger(vault.LedgerEntry{Hash: kv.Key[2:], ErasedAt: at})
		}
		return nil
	})
}

// keyIDOf returns the subject key id an entry belongs to (ok false for
// entries of no key: ledger entries, deletions of records).
func keyIDOf(kv *pb.KV) (id vault.KeyID, ok bool, err error) {
	k := kv.Key
	if len(k) < 2 || k[1] != '/' {
		return id, false, fmt.Errorf("%w: unknown key", ErrBadFrame)
	}
	rest := k[2:]
	switch k[0] {
	case pKeyID, pHashID, pIndex, pLookup, pPending, pRestrict, pConsent, pConsentLatest:
		if len(rest) < len(id) {
			return id, false, fmt.Errorf("%w: short key", ErrBadFrame)
		}
		copy(id[:], rest)
		return id, true, nil
	case pKey, pHashed, pToken, pExpiry:
		if deleted(kv) {
			return id, false, nil
		}
		switch k[0] {
		case pKey, pHashed:
			sk, _, err := decodeSubjectKey(kv.Value)
			return sk.ID, err == nil, err
		case pToken:
			r, err := decodeRecord(kv.Value)
			return r.KeyID, err == nil, err
		default:
			if len(kv.Value) != len(id) {
				return id, false, fmt.Errorf("%w: expiry entry", ErrBadFrame)
			}
			copy(id[:], kv.Value)
			return id, true, nil
		}
	case pHold, pHoldDue:
		// o/<key id>, y/<until (8)><key id> (holds.go)
		if k[0] == pHoldDue {
			rest = rest[min(8, len(rest)):]
		}
		if len(rest) != len(id) {
			return id, false, fmt.Errorf("%w: hold key", ErrBadFrame)
		}
		copy(id[:], rest)
		return id, true, nil
	case pCounter: // n/c<key id>: a consent counter; n/w: the event counter
		if len(rest) == 1+len(id) && rest[0] == pConsent {
			copy(id[:], rest[1:])
			return id, true, nil
		}
		return id, false, nil
	case pLedger, pHoldRcpt, pEvent, pCursor:
		return id, false, nil
	case layoutKey[0]:
		if bytes.Equal(k, layoutKey) {
			return id, false, nil
		}
	}
	return id, false, fmt.Errorf("%w: unknown key type", ErrBadFrame)
}

// Loader restores backups into a new data directory (a backup.Loader).
// It fills a staging directory beside the target, which Finish renames
// into place: a failed restore leaves nothing behind.
type Loader struct {
	ids     *vault.StoreIDs // from UseLedgerKey
	key     *aead.Key       // the same, for the restored store (nil: as Options.IDKey)
	db      *badger.DB
	dir     string // the target, absolute
	staging string
	logger  *slog.Logger
	space   *space // a restore is refused a full disk like any write
	done    bool
}

// NewLoader starts a restore into dir, which must not exist or be empty:
// a restore never mixes with or replaces existing data.
func NewLoader(dir string, logger *slog.Logger) (*Loader, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := checkEmptyDir(dir); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".restoring-")
	if err != nil {
		return nil, fmt.Errorf("creating a staging directory: %w", err)
	}
	if err := checkOpenSpace(staging); err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("badgerstore: opening %s: %w", staging, err)
	}
	db, err := badger.Open(badgerOptions(staging, logger))
	if err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("badgerstore: opening %s: %w", staging, err)
	}
	ids, err := newIDKeys(nil)
	if err != nil {
		db.Close()
		os.RemoveAll(staging)
		return nil, err
	}
	return &Loader{ids: ids, db: db, dir: abs, staging: staging, logger: logger,
		space: newSpace(staging, DefaultDiskReserve(), logger.With("component", "badgerstore"))}, nil
}

// UseLedgerKey sets the key that hashes and seals subject ids in the
// backups and in the restored store ([Options.IDKey]). The loader keeps a
// copy. Without it, the fixed test key stands in.
func (l *Loader) UseLedgerKey(k *aead.Key) error {
	if k == nil {
		return nil
	}
	ids, err := newIDKeys(k)
	if err != nil {
		return err
	}
	own, err := aead.KeyFromBytes(k.Bytes())
	if err != nil {
		ids.Zero()
		return err
	}
	l.dropKeys()
	l.ids, l.key = ids, own
	return nil
}

func (l *Loader) dropKeys() {
	l.ids.Zero()
	if l.key != nil {
		l.key.Zero()
	}
}

// checkEmptyDir refuses a data directory that holds anything.
func checkEmptyDir(dir string) error {
	if dir == "" {
		return errors.New("--data-dir: must be set")
	}
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("data directory: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("data directory %s is not empty: restore only into a new or empty directory (nothing was changed)", dir)
	}
	return nil
}

// Load applies one payload's frames, leaving out every entry that belongs
// to a key id for which drop returns true. Payloads must be loaded in
// order (a full backup, then its incrementals).
func (l *Loader) Load(frames func(fn func(frame []byte) error) error, drop func(vault.KeyID) bool) (loaded, dropped int64, err error) {
	pr, pw := io.Pipe()
	parsed := make(chan error, 1)
	go func() {
		err := frames(func(frame []byte) error {
			return decodeFrame(frame, func(kv *pb.KV) error {
				id, ok, err := keyIDOf(kv)
				if err != nil {
					return err
				}
				if ok && drop(id) {
					dropped++
					return nil
				}
				// Admitted like any write (space.go): a restore that fills
				// the disk stops with ErrStorageFull, not a SIGBUS.
				if err := l.space.admit(2 * int64(len(kv.Key)+len(kv.Value)+12)); err != nil {
					return err
				}
				loaded++
				// One frame per entry keeps the filter simple; badger's
				// loader batches the writes itself.
				b, err := proto.Marshal(&pb.KVList{Kv: []*pb.KV{kv}})
				if err != nil {
					return err
				}
				if _, err := pw.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(b)))); err != nil {
					return err
				}
				_, err = pw.Write(b)
				return err
			})
		})
		pw.CloseWithError(err) // nil: EOF for the loader
		parsed <- err
	}()
	err = l.db.Load(pr, 256)
	pr.CloseWithError(errors.New("load stopped")) // unblocks the parser if Load failed first
	// The frames' own error first: it says what was wrong with the backup
	// (the loader only saw the pipe close).
	if perr := <-parsed; perr != nil {
		return loaded, dropped, perr
	}
	if err != nil {
		return loaded, dropped, fmt.Errorf("badgerstore: loading backup: %w", err)
	}
	return loaded, dropped, nil
}

// Finish adds ledger to the restored store's erasure ledger (an existing
// entry keeps the later erasure time), syncs it and renames the staging
// directory into place.
func (l *Loader) Finish(ctx context.Context, ledger []vault.LedgerEntry) error {
	return l.FinishWithHolds(ctx, ledger, nil)
}

// FinishWithHolds is Finish that also schedules holds (a backup.HoldLoader):
// the holds of subjects erased after the backup was taken.
func (l *Loader) FinishWithHolds(ctx context.Context, ledger []vault.LedgerEntry, holds []vault.Hold) error {
	if l.done {
		return errors.New("badgerstore: the restore is already finished")
	}
	err := l.db.Sync()
	if cerr := l.db.Close(); err == nil {
		err = cerr
	}
	l.db = nil
	if err != nil {
		return err
	}
	// The ledger through the store itself, so that it is written exactly
	// as the store writes erasures. Opening it also migrates what a
	// layout-1 backup brought (ids.go): the restored directory holds no
	// subject id in the clear either.
	st, err := Open(l.staging, Options{IDKey: l.key}, l.logger)
	l.dropKeys()
	if err != nil {
		return err
	}
	err = st.PutLedgerEntries(ctx, ledger)
	if err == nil && len(holds) > 0 {
		err = st.putHolds(ctx, holds)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the erasure ledger: %w", err)
	}
	if err := os.Remove(l.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.Rename(l.staging, l.dir); err != nil {
		return fmt.Errorf("moving the restored store into place: %w", err)
	}
	l.done = true
	syncDir(filepath.Dir(l.dir))
	return nil
}

// Close abandons an unfinished restore: the staging directory is removed.
// After Finish it does nothing.
func (l *Loader) Close() error {
	if l.done {
		return nil
	}
	l.done = true
	l.dropKeys()
	var err error
	if l.db != nil {
		err = l.db.Close()
		l.db = nil
	}
	if rerr := os.RemoveAll(l.staging); err == nil {
		err = rerr
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
