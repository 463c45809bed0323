package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// Backups of the PostgreSQL store (a backup.Source).
//
// Backup payloads hold the badger store's entries, whatever the store
// (internal/backup's payload.go), so that every backup restores into
// either store. Snapshot therefore copies the database, read in one
// REPEATABLE READ, READ ONLY transaction (one consistent snapshot of a
// live database), into a badger staging store in a temporary directory,
// and writes that store's snapshot. Only full backups: PostgreSQL keeps
// no entry versions to take an incremental one from; for those, and for
// point-in-time recovery, use the database's own tools (pg_basebackup,
// WAL archiving) together with the erasure ledger (README).

// ErrIncremental: the PostgreSQL store takes full backups only.
var ErrIncremental = fmt.Errorf("pgstore: the PostgreSQL store takes full backups only (no --incremental-from); use the database's WAL archiving for finer recovery points: %w", errors.ErrUnsupported)

// fullBackupNext is the next that Snapshot returns: not 0, so that a
// backup taken "incrementally from" one of this store's is refused
// (ErrIncremental) rather than silently a full one.
const fullBackupNext = 1

// Snapshot writes a full backup's frames to w (since must be 0).
func (s *Store) Snapshot(w io.Writer, since uint64) (uint64, error) {
	if since != 0 {
		return 0, ErrIncremental
	}
	ctx := context.Background()
	staging, err := os.MkdirTemp("", "tokenvault-backup-")
	if err != nil {
		return 0, fmt.Errorf("pgstore: backup: %w", err)
	}
	// The staging store holds the sealed copy of the database: removed
	// whatever happens.
	defer os.RemoveAll(staging)
	dst, err := badgerstore.Open(filepath.Join(staging, "data"), badgerstore.Options{IDKey: s.ids.MAC}, s.log)
	if err != nil {
		return 0, fmt.Errorf("pgstore: backup: %w", err)
	}
	defer dst.Close()
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		view := *s
		view.q = tx
		return copyStore(ctx, &view, dst)
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: backup: %w", err)
	}
	if _, err := dst.Snapshot(w, 0); err != nil {
		return 0, fmt.Errorf("pgstore: backup: %w", err)
	}
	return fullBackupNext, nil
}

// BackupSizeEstimate bounds the payload's size for progress reports:
// the stored bytes of records and keys (an estimate from the planner's
// statistics would not be portable).
func (s *Store) BackupSizeEstimate() int64 {
	var n int64
	err := s.pool.QueryRow(context.Background(), `SELECT COALESCE((SELECT sum(length(token) + length(sealed) + 96) FROM tokenvault_records), 0)
		+ COALESCE((SELECT sum(length(wrapped) + length(sealed_subject) + 96) FROM tokenvault_subject_keys), 0)`).Scan(&n)
	if err != nil {
		return 0
	}
	return n
}
