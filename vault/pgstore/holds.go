package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// Legal holds ([vault.HoldStore]), in tokenvault_holds and
// tokenvault_hold_receipts (schema version 3). A hold key is an ordinary
// subject key (of a pseudo-subject, [vault.HoldSubject]); what this file
// adds is its schedule once the real subject is erased, written in the
// erasure's own transaction, and the receipts of hold shreds. Times are
// Unix nanoseconds (bigint), exactly the vault's.

var _ vault.HoldStore = (*Store)(nil)

// maxHoldReceipt bounds a stored hold receipt (the receipt parser's own
// limit), as in the badger store.
const maxHoldReceipt = 16 << 10

func checkHold(h vault.Hold) error {
	if h.Class == "" || len(h.Class) > vault.MaxHoldClassBytes {
		return fmt.Errorf("pgstore: hold class of %d bytes out of range", len(h.Class))
	}
	return nil
}

// scheduleHoldSQL schedules a hold only if its key still exists (locked
// FOR SHARE: a concurrent shred of the key waits) and it is not
// scheduled yet.
const scheduleHoldSQL = `INSERT INTO tokenvault_holds (key_id, class, erased_at_ns, until_ns)
	SELECT key_id, $2, $3, $4 FROM tokenvault_subject_keys WHERE key_id = $1 FOR SHARE
	ON CONFLICT (key_id) DO NOTHING`

// shredHoldingIn is the crypto-shred of the subject whose hash is h,
// scheduling holds, in tx (ShredSubject, ShredSubjectHolding, and
// ShredErasure with its event). The subject may have no key of its own
// if a hold is scheduled (the returned id is then zero); ErrNotFound if
// neither.
func (s *Store) shredHoldingIn(ctx context.Context, tx pgx.Tx, h []byte, ledger vault.LedgerEntry, holds []vault.Hold) (vault.KeyID, error) {
	var id vault.KeyID
	for _, hd := range holds {
		if err := checkHold(hd); err != nil {
			return id, err
		}
	}
	// The key row carries the restriction mark and the sealed id:
	// deleting it is the crypto-shred.
	var rid []byte
	err := tx.QueryRow(ctx, `DELETE FROM tokenvault_subject_keys WHERE subject_hash = $1 RETURNING key_id`, h).Scan(&rid)
	own := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return id, err
	}
	scheduled := 0
	for _, hd := range holds {
		tag, err := tx.Exec(ctx, scheduleHoldSQL, hd.ID[:], hd.Class, hd.ErasedAt.UnixNano(), hd.Until.UnixNano())
		if err != nil {
			return id, err
		}
		scheduled += int(tag.RowsAffected())
	}
	if !own && scheduled == 0 {
		return id, vault.ErrNotFound
	}
	if own {
		if len(rid) != len(id) {
			return id, fmt.Errorf("%w: key id", vault.ErrCorrupt)
		}
		copy(id[:], rid)
		if err := markPending(ctx, tx, id); err != nil {
			return id, err
		}
		// Other replicas' caches drop the key early (notify.go).
		if err := s.noteChange(ctx, tx, id); err != nil {
			return id, err
		}
	}
	if ledger.Hash != nil {
		return id, putLedger(ctx, tx, ledger)
	}
	return id, nil
}

func markPending(ctx context.Context, tx pgx.Tx, id vault.KeyID) error {
	_, err := tx.Exec(ctx, `INSERT INTO tokenvault_pending_purges (key_id, shredded_at) VALUES ($1, now()) ON CONFLICT (key_id) DO NOTHING`, id[:])
	return err
}

func (s *Store) ShredSubjectHolding(ctx context.Context, subject string, ledger vault.LedgerEntry, holds []vault.Hold) (vault.KeyID, error) {
	var id vault.KeyID
	if ledger.Hash != nil && len(ledger.Hash) != ledgerHashSize {
		return id, fmt.Errorf("pgstore: ledger hash of %d bytes, want %d", len(ledger.Hash), ledgerHashSize)
	}
	h, err := s.hashOf(subject)
	if err != nil {
		return id, err
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		id, err = s.shredHoldingIn(ctx, tx, h, ledger, holds)
		return err
	})
	return id, err
}

func scanHold(row pgx.Row) (vault.Hold, error) {
	var h vault.Hold
	var id []byte
	var erased, until int64
	if err := row.Scan(&id, &h.Class, &erased, &until); err != nil {
		return h, notFound(err)
	}
	if len(id) != len(h.ID) || checkHold(h) != nil {
		return h, fmt.Errorf("%w: hold entry", vault.ErrCorrupt)
	}
	copy(h.ID[:], id)
	h.ErasedAt, h.Until = time.Unix(0, erased).UTC(), time.Unix(0, until).UTC()
	return h, nil
}

const holdColumns = `key_id, class, erased_at_ns, until_ns`

func (s *Store) HoldOf(ctx context.Context, id vault.KeyID) (vault.Hold, error) {
	return scanHold(s.q.QueryRow(ctx, `SELECT `+holdColumns+` FROM tokenvault_holds WHERE key_id = $1`, id[:]))
}

func (s *Store) DueHolds(ctx context.Context, now time.Time, limit int) ([]vault.Hold, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.q.Query(ctx, `SELECT `+holdColumns+` FROM tokenvault_holds WHERE until_ns <= $1 ORDER BY until_ns, key_id LIMIT $2`, now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

func (s *Store) ShredHold(ctx context.Context, id vault.KeyID, ledger vault.LedgerEntry, subject string, receipt []byte) error {
	if ledger.Hash != nil && len(ledger.Hash) != ledgerHashSize {
		return fmt.Errorf("pgstore: ledger hash of %d bytes, want %d", len(ledger.Hash), ledgerHashSize)
	}
	if len(receipt) > maxHoldReceipt {
		return fmt.Errorf("pgstore: hold receipt of %d bytes, more than %d", len(receipt), maxHoldReceipt)
	}
	var sh []byte
	if subject != "" && receipt != nil {
		var err error
		if sh, err = s.hashOf(subject); err != nil {
			return err
		}
	}
	made := time.Now().UnixNano()
	return s.tx(ctx, func(tx pgx.Tx) error {
		// The schedule entry first: a second shred of the same hold finds
		// none (ErrNotFound) once the first committed.
		tag, err := tx.Exec(ctx, `DELETE FROM tokenvault_holds WHERE key_id = $1`, id[:])
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return vault.ErrNotFound
		}
		// The crypto-shred, as in ShredSubject, found by key id (the key
		// may be gone already: then only the schedule goes).
		tag, err = tx.Exec(ctx, `DELETE FROM tokenvault_subject_keys WHERE key_id = $1`, id[:])
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			if err := markPending(ctx, tx, id); err != nil {
				return err
			}
			if err := s.noteChange(ctx, tx, id); err != nil {
				return err
			}
		}
		if ledger.Hash != nil {
			if err := putLedger(ctx, tx, ledger); err != nil {
				return err
			}
		}
		if sh == nil {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO tokenvault_hold_receipts (subject_hash, made_ns, key_id, receipt) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, sh, made, id[:], receipt)
		return err
	})
}

func (s *Store) HoldReceipts(ctx context.Context, subject string) ([][]byte, error) {
	sh, err := s.hashOf(subject)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.Query(ctx, `SELECT receipt FROM tokenvault_hold_receipts WHERE subject_hash = $1 ORDER BY made_ns, key_id`, sh)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// Copies of hold schedules and receipts (backups and restores, through a
// badger staging store: see copyHolds).

// PutHolds schedules holds: each hold whose key is stored and which is
// not scheduled yet.
func (s *Store) PutHolds(ctx context.Context, holds []vault.Hold) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		for _, h := range holds {
			if err := checkHold(h); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, scheduleHoldSQL, h.ID[:], h.Class, h.ErasedAt.UnixNano(), h.Until.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
}

// HoldReceiptEntries lists up to limit stored hold receipts after the
// entry whose Cursor is after (nil for the start), in the badger store's
// order (hash, time made, key id).
func (s *Store) HoldReceiptEntries(ctx context.Context, after []byte, limit int) ([]badgerstore.HoldReceiptEntry, error) {
	var ah, aid []byte
	var amade int64 = math.MinInt64
	switch {
	case after == nil:
		ah, aid = []byte{}, []byte{}
	case len(after) == 32+8+len(vault.KeyID{}):
		ah, amade, aid = after[:32], int64(binary.BigEndian.Uint64(after[32:])), after[40:]
	default:
		return nil, errors.New("pgstore: hold receipt cursor out of range")
	}
	rows, err := s.q.Query(ctx, `SELECT subject_hash, made_ns, key_id, receipt FROM tokenvault_hold_receipts
		WHERE (subject_hash, made_ns, key_id) > ($1, $2, $3) ORDER BY subject_hash, made_ns, key_id LIMIT $4`, ah, amade, aid, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []badgerstore.HoldReceiptEntry
	for rows.Next() {
		var e badgerstore.HoldReceiptEntry
		var made int64
		var id []byte
		if err := rows.Scan(&e.SubjectHash, &made, &id, &e.Receipt); err != nil {
			return nil, err
		}
		if len(e.SubjectHash) != 32 || len(id) != len(e.KeyID) {
			return nil, fmt.Errorf("%w: hold receipt", vault.ErrCorrupt)
		}
		e.Made = time.Unix(0, made).UTC()
		copy(e.KeyID[:], id)
		out = append(out, e)
	}
	return out, rows.Err()
}

// PutHoldReceiptEntries stores copied hold receipts.
func (s *Store) PutHoldReceiptEntries(ctx context.Context, entries []badgerstore.HoldReceiptEntry) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		for _, e := range entries {
			if len(e.SubjectHash) != 32 || len(e.Receipt) > maxHoldReceipt {
				return errors.New("pgstore: copied hold receipt out of range")
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tokenvault_hold_receipts (subject_hash, made_ns, key_id, receipt) VALUES ($1, $2, $3, $4)
				ON CONFLICT DO NOTHING`, e.SubjectHash, e.Made.UnixNano(), e.KeyID[:], e.Receipt); err != nil {
				return err
			}
		}
		return nil
	})
}

// holdCopier is a store that takes copies of hold schedules and receipts
// (this store and the badger store).
type holdCopier interface {
	PutHolds(ctx context.Context, holds []vault.Hold) error
	HoldReceiptEntries(ctx context.Context, after []byte, limit int) ([]badgerstore.HoldReceiptEntry, error)
	PutHoldReceiptEntries(ctx context.Context, entries []badgerstore.HoldReceiptEntry) error
}

// copyHoldOf copies the hold schedule of key id, if it has one, from src
// to dst.
func copyHoldOf(ctx context.Context, src, dst vault.Store, id vault.KeyID) error {
	sh, ok := src.(vault.HoldStore)
	if !ok {
		return nil
	}
	h, err := sh.HoldOf(ctx, id)
	if errors.Is(err, vault.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	dc, ok := dst.(holdCopier)
	if !ok {
		return fmt.Errorf("pgstore: %T takes no copy of a hold schedule", dst)
	}
	return dc.PutHolds(ctx, []vault.Hold{h})
}

// copyHoldReceipts copies every stored hold receipt from src to dst.
func copyHoldReceipts(ctx context.Context, src, dst vault.Store) error {
	sc, ok := src.(holdCopier)
	if !ok {
		return nil
	}
	dc, ok := dst.(holdCopier)
	if !ok {
		return fmt.Errorf("pgstore: %T takes no copy of hold receipts", dst)
	}
	var after []byte
	for {
		page, err := sc.HoldReceiptEntries(ctx, after, copyPage)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		if err := dc.PutHoldReceiptEntries(ctx, page); err != nil {
			return err
		}
		after = page[len(page)-1].Cursor()
	}
}
