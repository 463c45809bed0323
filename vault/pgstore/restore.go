package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// Restores into PostgreSQL (a backup.Loader).
//
// Backup payloads hold the badger store's entries (internal/backup's
// payload.go: one encoding for every store), so the loader does not
// decode them itself: it restores into a badger staging directory with
// the badger store's own loader (which leaves out what the erasure ledger
// re-erases, and migrates old layouts), then copies what that store holds
// into the database through the stores' public methods: every subject
// key with its restriction, every record under it, and the erasure
// ledger. Old backups therefore restore into PostgreSQL as they do into
// badger, and "backup on badger, restore into postgres" is the way from
// one node to replicas.
//
// The database must be migrated and hold no tokenvault data. While the
// copy runs it carries a restore-in-progress mark, which Open refuses:
// no server serves a half-restored database. Close of an unfinished
// restore empties it again.

// restoreMark is the tokenvault_meta row of a restore in progress.
const restoreMark = "restore_in_progress"

// ErrRestoring: the database holds an unfinished restore.
var ErrRestoring = errors.New("pgstore: the database holds an unfinished restore (the restore failed or is running): run the restore again into an empty, migrated database")

// Loader restores backups into a PostgreSQL database.
type Loader struct {
	dsn     string
	staging string
	bl      *badgerstore.Loader
	key     *aead.Key
	logger  *slog.Logger
	marked  bool
	done    bool
}

// NewLoader starts a restore into the database named by dsn, which must
// be migrated and hold no tokenvault data.
func NewLoader(dsn string, logger *slog.Logger) (*Loader, error) {
	if logger == nil {
		logger = slog.Default()
	}
	ctx := context.Background()
	pool, err := openPool(ctx, dsn, 2, nil)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := checkSchema(ctx, pool); err != nil {
		return nil, err
	}
	var used bool
	err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokenvault_subject_keys) OR EXISTS (SELECT 1 FROM tokenvault_records)
		OR EXISTS (SELECT 1 FROM tokenvault_ledger) OR EXISTS (SELECT 1 FROM tokenvault_pending_purges)
		OR EXISTS (SELECT 1 FROM tokenvault_erasure_events) OR EXISTS (SELECT 1 FROM tokenvault_erasure_cursors)
		OR EXISTS (SELECT 1 FROM tokenvault_hold_receipts)`).Scan(&used)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if used {
		return nil, errors.New("pgstore: the database holds tokenvault data: restore only into a new, migrated database (nothing was changed)")
	}
	staging, err := os.MkdirTemp("", "tokenvault-restore-")
	if err != nil {
		return nil, fmt.Errorf("creating a staging directory: %w", err)
	}
	bl, err := badgerstore.NewLoader(filepath.Join(staging, "data"), logger)
	if err != nil {
		os.RemoveAll(staging)
		return nil, err
	}
	return &Loader{dsn: dsn, staging: staging, bl: bl, logger: logger}, nil
}

// UseLedgerKey sets the key that hashes and seals subject ids, in the
// backups and in the database. The loader keeps a copy.
func (l *Loader) UseLedgerKey(k *aead.Key) error {
	if err := l.bl.UseLedgerKey(k); err != nil {
		return err
	}
	if k == nil {
		return nil
	}
	own, err := aead.KeyFromBytes(k.Bytes())
	if err != nil {
		return err
	}
	l.key.Zero()
	l.key = own
	return nil
}

func (l *Loader) Scan(frame []byte, onKey func(subject string, sk vault.SubjectKey), onLedger func(vault.LedgerEntry)) error {
	return l.bl.Scan(frame, onKey, onLedger)
}

func (l *Loader) Load(frames func(fn func(frame []byte) error) error, drop func(vault.KeyID) bool) (int64, int64, error) {
	return l.bl.Load(frames, drop)
}

// copyBatch bounds the records copied in one PutRecords.
const copyBatch = 1000

// Finish completes the staging store (with ledger), copies it into the
// database and removes the staging directory.
func (l *Loader) Finish(ctx context.Context, ledger []vault.LedgerEntry) error {
	return l.FinishWithHolds(ctx, ledger, nil)
}

// FinishWithHolds is Finish that also schedules holds (a
// backup.HoldLoader): the holds of subjects erased after the backup was
// taken, scheduled in the staging store and copied with it.
func (l *Loader) FinishWithHolds(ctx context.Context, ledger []vault.LedgerEntry, holds []vault.Hold) error {
	if l.done {
		return errors.New("pgstore: the restore is already finished")
	}
	if err := l.bl.FinishWithHolds(ctx, ledger, holds); err != nil {
		return err
	}
	src, err := badgerstore.Open(filepath.Join(l.staging, "data"), badgerstore.Options{IDKey: l.key}, l.logger)
	if err != nil {
		return err
	}
	err = l.copyFrom(ctx, src)
	// Closed before its directory is removed: badger's close still
	// deletes and writes files there (it failed, and logged an error, on
	// every successful restore while the removal came first). Once the
	// copy is complete, a failed close of the staging copy is only
	// logged: failing Finish would make Close empty the restored database.
	cerr := src.Close()
	if err != nil {
		return errors.Join(err, cerr)
	}
	if cerr != nil {
		l.logger.Warn("restore: closing the staging store failed; the database is restored", "err", cerr)
	}
	l.done = true
	l.key.Zero()
	os.RemoveAll(l.staging)
	return nil
}

// copyFrom marks the database, copies the staging store src into it and
// removes the mark.
func (l *Loader) copyFrom(ctx context.Context, src *badgerstore.Store) error {
	// The mark first, through a store handle that the mark does not stop
	// (Open refuses a marked database; this handle is opened before).
	dst, err := Open(ctx, l.dsn, Options{IDKey: l.key, Logger: l.logger})
	if err != nil {
		return err
	}
	defer dst.Close()
	if _, err := dst.pool.Exec(ctx, `INSERT INTO tokenvault_meta (name, value) VALUES ($1, '\x01')`, restoreMark); err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	l.marked = true
	if err := copyStore(ctx, src, dst); err != nil {
		return fmt.Errorf("pgstore: copying the restored store into the database: %w", err)
	}
	if _, err := dst.pool.Exec(ctx, `DELETE FROM tokenvault_meta WHERE name = $1`, restoreMark); err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	// Unmarked: the database is restored, and nothing may empty it now.
	l.marked = false
	return nil
}

// fullStore is a store with the capabilities a copy reads and writes.
type fullStore interface {
	vault.Store
	vault.RightsStore
	vault.LedgerStore
	vault.KeyScanStore
}

// copyStore copies every subject key (with its restriction), its records
// and consent history and hold schedule, the erasure event log with its
// cursors, the receipts of hold shreds and the erasure ledger from src to
// the empty dst. Records of shredded
// keys are not copied: they are reached through live keys only.
func copyStore(ctx context.Context, src, dst fullStore) error {
	after := ""
	for {
		page, err := src.SubjectKeys(ctx, after, 500)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			// SubjectKeys does not report the restriction; SubjectKey does.
			sk, err := src.SubjectKey(ctx, e.Subject)
			if err != nil {
				return err
			}
			if _, err := dst.CreateSubjectKey(ctx, e.Subject, sk); err != nil {
				return err
			}
			if !sk.Restricted.IsZero() {
				if err := dst.SetRestricted(ctx, e.Subject, sk.Restricted); err != nil {
					return err
				}
			}
			recAfter := ""
			for {
				recs, err := src.KeyRecords(ctx, sk.ID, recAfter, copyBatch)
				if err != nil {
					return err
				}
				if len(recs) == 0 {
					break
				}
				if err := dst.PutRecords(ctx, e.Subject, sk.ID, recs); err != nil {
					return err
				}
				recAfter = recs[len(recs)-1].Cursor
			}
			if err := copyConsentOf(ctx, src, dst, e.Subject, sk.ID); err != nil {
				return err
			}
			if err := copyHoldOf(ctx, src, dst, sk.ID); err != nil {
				return err
			}
		}
		after = page[len(page)-1].Subject
	}
	if err := copyErasureLog(ctx, src, dst); err != nil {
		return err
	}
	if err := copyHoldReceipts(ctx, src, dst); err != nil {
		return err
	}
	var hash []byte
	for {
		page, err := src.LedgerEntries(ctx, hash, purgeBatch)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		if err := dst.PutLedgerEntries(ctx, page); err != nil {
			return err
		}
		hash = page[len(page)-1].Hash
	}
}

// Close abandons an unfinished restore: the staging directory is removed
// and what was copied into the database is deleted. After Finish it does
// nothing.
func (l *Loader) Close() error {
	if l.done {
		return nil
	}
	l.done = true
	l.key.Zero()
	err := l.bl.Close()
	if l.marked {
		if cerr := l.empty(); err == nil {
			err = cerr
		}
	}
	if rerr := os.RemoveAll(l.staging); err == nil {
		err = rerr
	}
	return err
}

// empty deletes every row a failed copy wrote, the mark last.
func (l *Loader) empty() error {
	ctx := context.Background()
	pool, err := openPool(ctx, l.dsn, 1, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, stmt := range []string{"DELETE FROM tokenvault_records", "DELETE FROM tokenvault_subject_keys", "DELETE FROM tokenvault_ledger",
		"DELETE FROM tokenvault_pending_purges", "DELETE FROM tokenvault_consent", "DELETE FROM tokenvault_erasure_events",
		"DELETE FROM tokenvault_holds", "DELETE FROM tokenvault_hold_receipts",
		"DELETE FROM tokenvault_erasure_cursors", "UPDATE tokenvault_counters SET n = 0", "DELETE FROM tokenvault_leases", "DELETE FROM tokenvault_meta"} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("pgstore: emptying the database after a failed restore: %w", err)
		}
	}
	return nil
}
