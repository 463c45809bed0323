package badgerstore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Copying another store's erasure event log in (the PostgreSQL store's
// backups, which are written through a badger staging store): events with
// their numbers, and the consumers' cursors. Not for a live store's own
// log: the numbers are the source's.

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
				if e.subject, err = s.ids.seal.Seal(nil, []byte(ev.Subject), eventAAD(ev.Seq, "subject")); err != nil {
					return err
				}
			}
			if ev.Receipt != nil {
				if e.receipt, err = s.ids.seal.Seal(nil, ev.Receipt, eventAAD(ev.Seq, "receipt")); err != nil {
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
