package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Consent records ([vault.ConsentStore]), in tokenvault_consent (schema
// version 2): rows under the subject's key id, opaque to the store (the
// vault seals them under a key derived from the subject's data key), so
// the crypto-shred destroys them and PurgeKey deletes them with the
// key's records.

var _ vault.ConsentStore = (*Store)(nil)

const (
	consentTagSize = 32
	// maxConsentSealed bounds a sealed entry: the vault's purpose and
	// source (256 bytes each) with its header, as in the badger store.
	maxConsentSealed = 2*vault.MaxIDBytes + 12 + aead.Overhead
)

func checkConsentEntry(e vault.ConsentEntry) error {
	if len(e.Tag) != consentTagSize || len(e.Sealed) <= aead.Overhead || len(e.Sealed) > maxConsentSealed {
		return fmt.Errorf("pgstore: consent entry out of range (tag %d bytes, sealed %d)", len(e.Tag), len(e.Sealed))
	}
	return nil
}

// appendConsentSQL takes the key's next number from its history: two
// concurrent appends may compute the same one, and the primary key makes
// the later fail with a unique violation, which s.tx retries.
const appendConsentSQL = `INSERT INTO tokenvault_consent (key_id, seq, tag, sealed)
	SELECT $1, COALESCE(max(seq), 0) + 1, $2, $3 FROM tokenvault_consent WHERE key_id = $1`

func (s *Store) AppendConsent(ctx context.Context, subject string, id vault.KeyID, e vault.ConsentEntry) error {
	if err := checkConsentEntry(e); err != nil {
		return err
	}
	h, err := s.hashOf(subject)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		// The key row is locked FOR SHARE (liveKey): a shred waits for the
		// append, and an append after the shred finds no key.
		if err := liveKey(ctx, tx, h, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, appendConsentSQL, id[:], e.Tag, e.Sealed)
		return err
	})
}

func (s *Store) LatestConsent(ctx context.Context, id vault.KeyID, tag []byte) (vault.ConsentEntry, error) {
	if len(tag) != consentTagSize {
		return vault.ConsentEntry{}, fmt.Errorf("pgstore: consent tag of %d bytes", len(tag))
	}
	var sealed []byte
	err := s.q.QueryRow(ctx, `SELECT sealed FROM tokenvault_consent WHERE key_id = $1 AND tag = $2 ORDER BY seq DESC LIMIT 1`, id[:], tag).Scan(&sealed)
	if err != nil {
		return vault.ConsentEntry{}, notFound(err)
	}
	if len(sealed) <= aead.Overhead {
		return vault.ConsentEntry{}, fmt.Errorf("%w: latest consent entry", vault.ErrCorrupt)
	}
	return vault.ConsentEntry{Tag: append([]byte{}, tag...), Sealed: sealed}, nil
}

func (s *Store) ConsentHistory(ctx context.Context, id vault.KeyID, after uint64, limit int) ([]vault.ConsentEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	if after > 1<<62 {
		return nil, nil // beyond any bigint seq
	}
	rows, err := s.q.Query(ctx, `SELECT tag, sealed FROM tokenvault_consent WHERE key_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, id[:], int64(after), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.ConsentEntry
	for rows.Next() {
		var e vault.ConsentEntry
		if err := rows.Scan(&e.Tag, &e.Sealed); err != nil {
			return nil, err
		}
		if len(e.Tag) != consentTagSize || len(e.Sealed) <= aead.Overhead {
			return nil, fmt.Errorf("%w: consent entry", vault.ErrCorrupt)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// purgeConsent deletes the consent history of a shredded key (PurgeKey).
func (s *Store) purgeConsent(ctx context.Context, id vault.KeyID) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM tokenvault_consent WHERE key_id = $1`, id[:])
	if err != nil {
		return fmt.Errorf("pgstore: purging consent records: %w", err)
	}
	return nil
}

// copyConsentOf copies the consent history of subject's key id from src
// to dst (backups and restores, copyStore), in order, if src keeps one.
func copyConsentOf(ctx context.Context, src, dst vault.Store, subject string, id vault.KeyID) error {
	sc, ok := src.(vault.ConsentStore)
	if !ok {
		return nil
	}
	dc, ok := dst.(vault.ConsentStore)
	if !ok {
		return fmt.Errorf("pgstore: %T keeps no consent records", dst)
	}
	return copyConsent(ctx, sc, dc, subject, id)
}

func copyConsent(ctx context.Context, src, dst vault.ConsentStore, subject string, id vault.KeyID) error {
	for after := uint64(0); ; {
		page, err := src.ConsentHistory(ctx, id, after, copyBatch)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := dst.AppendConsent(ctx, subject, id, e); err != nil {
				return err
			}
		}
		if len(page) < copyBatch {
			return nil
		}
		after += uint64(len(page))
	}
}
