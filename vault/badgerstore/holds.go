package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/vault"
)

// Legal holds ([vault.HoldStore]). A hold key is an ordinary subject key
// (of a pseudo-subject, hashed like any other); what this file adds is
// its schedule once the real subject is erased, and the receipts of hold
// shreds:
//
//	o/<key id>                                 -> hold: v1 | erased at (8) | until (8) | LP1(class)
//	y/<until (8)><key id>                      -> empty (due index, for DueHolds)
//	z/<hash(subject) (32)><shred time (8)><key id> -> receipt of a hold's shred (no subject id in it)
//
// o/ and y/ belong to the hold key (a restore drops them with it); z/
// belongs to no key (a receipt outlives what it is about, like the
// ledger).
const (
	pHold     = 'o'
	pHoldDue  = 'y'
	pHoldRcpt = 'z'

	holdV1 = 1
	// maxHoldReceipt bounds a stored hold receipt (the receipt parser's
	// own limit).
	maxHoldReceipt = 16 << 10
)

var _ vault.HoldStore = (*Store)(nil)

func holdDueKey(until time.Time, id vault.KeyID) []byte {
	return key(pHoldDue, binary.BigEndian.AppendUint64(nil, uint64(until.UnixNano())), id[:])
}

func encodeHold(h vault.Hold) ([]byte, error) {
	if h.Class == "" || len(h.Class) > vault.MaxHoldClassBytes {
		return nil, fmt.Errorf("badgerstore: hold class of %d bytes out of range", len(h.Class))
	}
	b := []byte{holdV1}
	b = binary.BigEndian.AppendUint64(b, uint64(h.ErasedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Until.UnixNano()))
	b = append(b, byte(len(h.Class)))
	return append(b, h.Class...), nil
}

func decodeHold(id vault.KeyID, b []byte) (vault.Hold, error) {
	bad := fmt.Errorf("%w: hold entry", vault.ErrCorrupt)
	if len(b) < 18 || b[0] != holdV1 || int(b[17]) != len(b)-18 || len(b) == 18 || len(b)-18 > vault.MaxHoldClassBytes {
		return vault.Hold{}, bad
	}
	return vault.Hold{ID: id, ErasedAt: time.Unix(0, int64(binary.BigEndian.Uint64(b[1:]))).UTC(),
		Until: time.Unix(0, int64(binary.BigEndian.Uint64(b[9:]))).UTC(), Class: string(b[18:])}, nil
}

func putHold(txn *badger.Txn, h vault.Hold) error {
	enc, err := encodeHold(h)
	if err != nil {
		return err
	}
	if err := txn.Set(key(pHold, h.ID[:]), enc); err != nil {
		return err
	}
	return txn.Set(holdDueKey(h.Until, h.ID), nil)
}

func (s *Store) ShredSubjectHolding(ctx context.Context, subject string, ledger vault.LedgerEntry, holds []vault.Hold) (id vault.KeyID, err error) {
	if ledger.Hash != nil && len(ledger.Hash) != ledgerHashSize {
		return id, fmt.Errorf("badgerstore: ledger hash of %d bytes, want %d", len(ledger.Hash), ledgerHashSize)
	}
	for _, h := range holds {
		if _, err := encodeHold(h); err != nil {
			return id, err
		}
	}
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return id, err
	}
	err = s.update(ctx, func(txn *badger.Txn) error {
		id, err = shredHoldingIn(txn, hk, ledger, holds)
		return err
	})
	return id, err
}

func (s *Store) HoldOf(ctx context.Context, id vault.KeyID) (h vault.Hold, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		b, err := get(txn, key(pHold, id[:]))
		if err != nil {
			return err
		}
		h, err = decodeHold(id, b)
		return err
	})
	return h, err
}

func (s *Store) DueHolds(ctx context.Context, now time.Time, limit int) (out []vault.Hold, err error) {
	if limit <= 0 {
		return nil, nil
	}
	end := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	err = s.view(ctx, func(txn *badger.Txn) error {
		prefix := key(pHoldDue)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			k := it.Item().Key()[len(prefix):]
			var id vault.KeyID
			if len(k) != 8+len(id) {
				return fmt.Errorf("%w: hold due-index key", vault.ErrCorrupt)
			}
			if bytes.Compare(k[:8], end) > 0 {
				return nil
			}
			copy(id[:], k[8:])
			b, err := get(txn, key(pHold, id[:]))
			if err != nil {
				if errors.Is(err, vault.ErrNotFound) {
					err = fmt.Errorf("%w: hold due-index entry without its hold", vault.ErrCorrupt)
				}
				return err
			}
			h, err := decodeHold(id, b)
			if err != nil {
				return err
			}
			out = append(out, h)
		}
		return nil
	})
	return out, err
}

func (s *Store) ShredHold(ctx context.Context, id vault.KeyID, ledger vault.LedgerEntry, subject string, receipt []byte) error {
	if ledger.Hash != nil && len(ledger.Hash) != ledgerHashSize {
		return fmt.Errorf("badgerstore: ledger hash of %d bytes, want %d", len(ledger.Hash), ledgerHashSize)
	}
	if len(receipt) > maxHoldReceipt {
		return fmt.Errorf("badgerstore: hold receipt of %d bytes, more than %d", len(receipt), maxHoldReceipt)
	}
	var rk []byte
	if subject != "" && receipt != nil {
		sh, err := s.ids.Hash(subject)
		if err != nil {
			return err
		}
		rk = key(pHoldRcpt, sh, binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())), id[:])
	}
	return s.update(ctx, func(txn *badger.Txn) error {
		b, err := get(txn, key(pHold, id[:]))
		if err != nil {
			return err
		}
		h, err := decodeHold(id, b)
		if err != nil {
			return err
		}
		if err := txn.Delete(key(pHold, id[:])); err != nil {
			return err
		}
		if err := txn.Delete(holdDueKey(h.Until, id)); err != nil {
			return err
		}
		// The crypto-shred, as in ShredSubject, found by key id.
		hash, err := get(txn, key(pHashID, id[:]))
		switch {
		case err == nil:
			for _, k := range [][]byte{key(pHashed, hash), key(pHashID, id[:]), key(pRestrict, id[:])} {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			if err := txn.Set(key(pPending, id[:]), binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))); err != nil {
				return err
			}
		case !errors.Is(err, vault.ErrNotFound):
			return err
		}
		if ledger.Hash != nil {
			if err := putLedger(txn, ledger); err != nil {
				return err
			}
		}
		if rk != nil {
			return txn.Set(rk, receipt)
		}
		return nil
	})
}

func (s *Store) HoldReceipts(ctx context.Context, subject string) (out [][]byte, err error) {
	sh, err := s.ids.Hash(subject)
	if err != nil {
		return nil, err
	}
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pHoldRcpt, sh)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// putHolds schedules holds in the restored store (restore): each hold
// whose key the restore kept and which is not scheduled yet.
func (s *Store) putHolds(ctx context.Context, holds []vault.Hold) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		for _, h := range holds {
			if _, err := get(txn, key(pHashID, h.ID[:])); errors.Is(err, vault.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if err := absent(txn, key(pHold, h.ID[:])); err == errExists {
				continue
			} else if err != nil {
				return err
			}
			if err := putHold(txn, h); err != nil {
				return err
			}
		}
		return nil
	})
}

// shredHoldingIn is ShredSubjectHolding's transaction (ShredErasure adds
// the event to it, erasures.go).
func shredHoldingIn(txn *badger.Txn, hk []byte, ledger vault.LedgerEntry, holds []vault.Hold) (id vault.KeyID, err error) {
	sk, err := subjectKey(txn, hk)
	own := err == nil
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		return id, err
	}
	scheduled := 0
	for _, h := range holds {
		// Only a hold key that still exists and is not yet scheduled.
		if _, err := get(txn, key(pHashID, h.ID[:])); errors.Is(err, vault.ErrNotFound) {
			continue
		} else if err != nil {
			return id, err
		}
		switch err := absent(txn, key(pHold, h.ID[:])); {
		case err == errExists:
			continue
		case err != nil:
			return id, err
		}
		if err := putHold(txn, h); err != nil {
			return id, err
		}
		scheduled++
	}
	if !own && scheduled == 0 {
		return id, vault.ErrNotFound
	}
	if own {
		id = sk.ID
		for _, k := range [][]byte{hk, key(pHashID, id[:]), key(pRestrict, id[:])} {
			if err := txn.Delete(k); err != nil {
				return id, err
			}
		}
		if err := txn.Set(key(pPending, id[:]), binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))); err != nil {
			return id, err
		}
	}
	if ledger.Hash != nil {
		return id, putLedger(txn, ledger)
	}
	return id, nil
}
