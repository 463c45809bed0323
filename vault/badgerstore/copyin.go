package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Copying what the core interfaces cannot into a store, for the
// PostgreSQL store's backups (written through a badger staging store) and
// restores (read out of one): the erasure event log with its numbers and
// cursors, hold schedules and the receipts of hold shreds. Not for a live
// store's own data: the numbers are the source's.

// PutErasureEvents stores evs under their numbers (sealing the subject id
// and receipt as ShredErasure does; an event without subject id stays
// dropped) and raises the last number given to the highest of them.
func (s *Store) PutErasureEvents(ctx context.Context, evs []vault.ErasureEvent) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		last, err := readCounter(txn, eventCounterKey)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Seq == 0 || (ev.Subject == "" && ev.Receipt != nil) || len(ev.Receipt)+aead.Overhead > maxReceiptSealed {
				return fmt.Errorf("badgerstore: copied erasure event %d out of range", ev.Seq)
			}
			e := storedEvent{erasedAt: ev.ErasedAt, id: ev.KeyID, hash: make([]byte, 32)}
			if ev.Subject != "" {
				hk, err := s.subjectKeyOf(ev.Subject)
				if err != nil {
					return err
				}
				e.hash = hk[2:]
				if e.subject, err = s.ids.Seal.Seal(nil, []byte(ev.Subject), eventAAD(ev.Seq, "subject")); err != nil {
					return err
				}
			}
			if ev.Receipt != nil {
				if e.receipt, err = s.ids.Seal.Seal(nil, ev.Receipt, eventAAD(ev.Seq, "receipt")); err != nil {
					return err
				}
			}
			if err := txn.Set(eventKey(ev.Seq), e.encode()); err != nil {
				return err
			}
			last = max(last, ev.Seq)
		}
		return txn.Set(eventCounterKey, binary.BigEndian.AppendUint64(nil, last))
	})
}

// PutErasureCursors sets the consumers' cursors and raises the last
// number given to the highest of them (the source may have trimmed every
// event they acknowledged).
func (s *Store) PutErasureCursors(ctx context.Context, cursors map[string]uint64) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		last, err := readCounter(txn, eventCounterKey)
		if err != nil {
			return err
		}
		for c, seq := range cursors {
			if c == "" || len(c) > 256 {
				return fmt.Errorf("badgerstore: consumer name of %d bytes", len(c))
			}
			if err := txn.Set(key(pCursor, []byte(c)), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
			last = max(last, seq)
		}
		return txn.Set(eventCounterKey, binary.BigEndian.AppendUint64(nil, last))
	})
}

// PutHolds schedules holds (a copy of another store's schedule): each
// hold whose key is stored and which is not scheduled yet.
func (s *Store) PutHolds(ctx context.Context, holds []vault.Hold) error {
	for _, h := range holds {
		if _, err := encodeHold(h); err != nil {
			return err
		}
	}
	return s.putHolds(ctx, holds)
}

// HoldReceiptEntry is one stored receipt of a hold's shred, as a copy
// moves it between stores: under the real subject's keyed hash
// ([vault.StoreSubjectHash], the same in every store of a vault).
type HoldReceiptEntry struct {
	SubjectHash []byte // 32 bytes
	Made        time.Time
	KeyID       vault.KeyID
	Receipt     []byte
}

// Cursor is the entry's position in the stores' common order (hash, time
// made, key id): HoldReceiptEntries lists the entries after it.
func (e HoldReceiptEntry) Cursor() []byte {
	b := append(append([]byte{}, e.SubjectHash...), binary.BigEndian.AppendUint64(nil, uint64(e.Made.UnixNano()))...)
	return append(b, e.KeyID[:]...)
}

// HoldReceiptEntries lists up to limit stored hold receipts after the
// entry whose Cursor is after (nil for the start).
func (s *Store) HoldReceiptEntries(ctx context.Context, after []byte, limit int) (out []HoldReceiptEntry, err error) {
	prefix := key(pHoldRcpt)
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		it.Seek(key(pHoldRcpt, after))
		for ; it.Valid() && len(out) < limit; it.Next() {
			k := it.Item().Key()[len(prefix):]
			if after != nil && bytes.Equal(k, after) {
				continue
			}
			var e HoldReceiptEntry
			if len(k) != 32+8+len(e.KeyID) {
				return fmt.Errorf("%w: hold receipt key", vault.ErrCorrupt)
			}
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			e.SubjectHash = append([]byte{}, k[:32]...)
			e.Made = time.Unix(0, int64(binary.BigEndian.Uint64(k[32:]))).UTC()
			copy(e.KeyID[:], k[40:])
			e.Receipt = b
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// PutHoldReceiptEntries stores copied hold receipts.
func (s *Store) PutHoldReceiptEntries(ctx context.Context, entries []HoldReceiptEntry) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		for _, e := range entries {
			if len(e.SubjectHash) != 32 || len(e.Receipt) > maxHoldReceipt {
				return fmt.Errorf("badgerstore: copied hold receipt out of range")
			}
			if err := txn.Set(key(pHoldRcpt, e.Cursor()), e.Receipt); err != nil {
				return err
			}
		}
		return nil
	})
}
