package pgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/vault"
)

// Store methods for data-subject rights: export (KeyRecords),
// rectification (ReplaceRecord), restriction (SetRestricted), retention
// (PurgeExpired, through the partial index on expires) and the erasure
// ledger (written by ShredSubject in the shred's own transaction).

func (s *Store) KeyRecords(ctx context.Context, id vault.KeyID, after string, limit int) ([]vault.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	// The cursor (vault.Record.Cursor) is the hex of the last listed
	// record's token hash: the listing is in that order.
	start := []byte{}
	if after != "" {
		h, err := hex.DecodeString(after)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("%w: after: not a listing cursor of this store", vault.ErrInvalidArgument)
		}
		start = h
	}
	rows, err := s.q.Query(ctx, `SELECT `+recordColumns+` FROM tokenvault_records
		WHERE key_id = $1 AND token_hash > $2 ORDER BY token_hash LIMIT $3`, id[:], start, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		r.Cursor = hex.EncodeToString(tokenHash(r.Token))
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) ReplaceRecord(ctx context.Context, subject string, id vault.KeyID, r vault.Record) error {
	if err := checkRecord(r, id); err != nil {
		return err
	}
	h, err := s.hashOf(subject)
	if err != nil {
		return err
	}
	th := tokenHash(r.Token)
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if err := liveKey(ctx, tx, h, id); err != nil {
			return err
		}
		old, err := scanRecord(tx.QueryRow(ctx, `SELECT `+recordColumns+` FROM tokenvault_records WHERE token_hash = $1 FOR UPDATE`, th))
		if err != nil {
			return err
		}
		if old.KeyID != id || old.Token != r.Token {
			return vault.ErrNotFound
		}
		if r.Lookup != nil && !bytes.Equal(r.Lookup, old.Lookup) {
			var taken bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokenvault_records WHERE key_id = $1 AND lookup = $2 AND token_hash <> $3)`,
				id[:], r.Lookup, th).Scan(&taken); err != nil {
				return err
			}
			if taken {
				return &vault.CollisionError{Lookup: true}
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE tokenvault_records SET kind = $2, created = $3, expires = $4, lookup = $5, sealed = $6, aad_version = $7
			WHERE token_hash = $1`, th, int64(r.Kind), r.Created, optTime(r.Expires), optBytes(r.Lookup), r.Sealed, int64(r.AADVersion)); err != nil {
			return err
		}
		return s.noteChange(ctx, tx, id)
	})
	return err
}

func (s *Store) SetRestricted(ctx context.Context, subject string, since time.Time) error {
	h, err := s.hashOf(subject)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		var rid []byte
		err := tx.QueryRow(ctx, `UPDATE tokenvault_subject_keys SET restricted = $2 WHERE subject_hash = $1 RETURNING key_id`, h, optTime(since)).Scan(&rid)
		if err != nil {
			return notFound(err)
		}
		var id vault.KeyID
		if copy(id[:], rid) != len(id) {
			return fmt.Errorf("%w: key id", vault.ErrCorrupt)
		}
		return s.noteChange(ctx, tx, id)
	})
}

func (s *Store) PurgeExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	limit = min(limit, purgeBatch)
	// SKIP LOCKED: records a concurrent purge (or rectification) holds are
	// left to it rather than waited for.
	tag, err := s.pool.Exec(ctx, `DELETE FROM tokenvault_records WHERE token_hash IN
		(SELECT token_hash FROM tokenvault_records WHERE expires IS NOT NULL AND expires <= $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED)`,
		now, limit)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

func (s *Store) PutLedgerEntries(ctx context.Context, entries []vault.LedgerEntry) error {
	for len(entries) > 0 {
		batch := entries[:min(len(entries), purgeBatch)]
		entries = entries[len(batch):]
		err := s.tx(ctx, func(tx pgx.Tx) error {
			for _, e := range batch {
				if err := putLedger(ctx, tx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) LedgerEntries(ctx context.Context, after []byte, limit int) ([]vault.LedgerEntry, error) {
	if after == nil {
		after = []byte{}
	}
	rows, err := s.q.Query(ctx, `SELECT hash, erased_at FROM tokenvault_ledger WHERE hash > $1 ORDER BY hash LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.LedgerEntry
	for rows.Next() {
		var e vault.LedgerEntry
		if err := rows.Scan(&e.Hash, &e.ErasedAt); err != nil {
			return nil, err
		}
		if len(e.Hash) != ledgerHashSize {
			return nil, fmt.Errorf("%w: ledger hash", vault.ErrCorrupt)
		}
		e.ErasedAt = e.ErasedAt.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
