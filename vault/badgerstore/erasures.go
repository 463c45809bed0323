package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Erasure events ([vault.ErasureEventStore]). Keys:
//
//	w/<seq (8)>     -> event: v1 | erased at (8) | key id (16) | hash(subject) (32) |
//	                   len (2) | sealed subject id | sealed receipt (may be empty)
//	u/<consumer>    -> last sequence acknowledged (8)
//	n/w             -> last sequence given (8)
//
// The subject id and the receipt (which names the subject) are sealed
// under the store seal key, bound to the sequence, so that no subject id
// is in the clear even in a pending event; "dropped" rewrites the event
// with both empty, leaving the keyed hash. The counter is read and
// written in the shred's transaction, so erasures get their sequence in
// commit order (concurrent shreds conflict and retry).

const (
	pEvent  = 'w'
	pCursor = 'u'

	eventV1 = 1
	// maxReceiptSealed bounds a sealed receipt (receipt files are at most
	// 16 KiB).
	maxReceiptSealed = 16<<10 + aead.Overhead
)

var (
	_ vault.ErasureEventStore = (*Store)(nil)

	eventCounterKey = key(pCounter, []byte{pEvent})
)

func eventKey(seq uint64) []byte { return key(pEvent, binary.BigEndian.AppendUint64(nil, seq)) }

func eventAAD(seq uint64, what string) []byte {
	return binary.BigEndian.AppendUint64([]byte("tokenvault/badgerstore/erasure-event/v1/"+what), seq)
}

// storedEvent is an event as encoded, with its fields still sealed.
type storedEvent struct {
	erasedAt time.Time
	id       vault.KeyID
	hash     []byte
	subject  []byte // sealed; nil once dropped
	receipt  []byte // sealed; nil until attached or once dropped
}

func (e storedEvent) encode() []byte {
	b := []byte{eventV1}
	b = binary.BigEndian.AppendUint64(b, uint64(e.erasedAt.UnixNano()))
	b = append(b, e.id[:]...)
	b = append(b, e.hash...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.subject)))
	b = append(b, e.subject...)
	return append(b, e.receipt...)
}

func decodeEvent(b []byte) (storedEvent, error) {
	var e storedEvent
	const head = 1 + 8 + 16 + 32 + 2
	bad := fmt.Errorf("%w: erasure event", vault.ErrCorrupt)
	if len(b) < head || b[0] != eventV1 {
		return e, bad
	}
	e.erasedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[1:]))).UTC()
	copy(e.id[:], b[9:])
	e.hash = b[25:57]
	n := int(binary.BigEndian.Uint16(b[57:]))
	rest := b[head:]
	if n > len(rest) || n > sealedSubjectMax || (n == 0 && len(rest) > 0) || len(rest)-n > maxReceiptSealed {
		return e, bad
	}
	if n > 0 {
		e.subject = rest[:n]
	}
	if len(rest) > n {
		e.receipt = rest[n:]
	}
	return e, nil
}

func (s *Store) openEvent(seq uint64, e storedEvent) (vault.ErasureEvent, error) {
	out := vault.ErasureEvent{Seq: seq, ErasedAt: e.erasedAt, KeyID: e.id}
	if e.subject != nil {
		b, err := s.ids.Seal.Open(nil, e.subject, eventAAD(seq, "subject"))
		if err != nil {
			return out, fmt.Errorf("%w: erasure event subject: %w", vault.ErrCorrupt, err)
		}
		out.Subject = string(b)
	}
	if e.receipt != nil {
		b, err := s.ids.Seal.Open(nil, e.receipt, eventAAD(seq, "receipt"))
		if err != nil {
			return out, fmt.Errorf("%w: erasure event receipt: %w", vault.ErrCorrupt, err)
		}
		out.Receipt = b
	}
	return out, nil
}

func (s *Store) ShredErasure(ctx context.Context, subject string, ledger vault.LedgerEntry, ev vault.ErasureEvent) (out vault.ErasureEvent, err error) {
	if ledger.Hash != nil && len(ledger.Hash) != ledgerHashSize {
		return out, fmt.Errorf("badgerstore: ledger hash of %d bytes, want %d", len(ledger.Hash), ledgerHashSize)
	}
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return out, err
	}
	for _, h := range ev.Holds {
		if _, err := encodeHold(h); err != nil {
			return out, err
		}
	}
	s.events.Lock()
	defer s.events.Unlock()
	err = s.update(ctx, func(txn *badger.Txn) error {
		id, err := shredHoldingIn(txn, hk, ledger, ev.Holds)
		if err != nil {
			return err
		}
		seq, err := readCounter(txn, eventCounterKey)
		if err != nil {
			return err
		}
		seq++
		sealed, err := s.ids.Seal.Seal(nil, []byte(subject), eventAAD(seq, "subject"))
		if err != nil {
			return err
		}
		e := storedEvent{erasedAt: ev.ErasedAt, id: id, hash: hk[2:], subject: sealed}
		if err := txn.Set(eventCounterKey, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		out = vault.ErasureEvent{Seq: seq, Subject: subject, ErasedAt: ev.ErasedAt, KeyID: id}
		return txn.Set(eventKey(seq), e.encode())
	})
	return out, err
}

func (s *Store) AttachReceipt(ctx context.Context, seq uint64, receipt []byte) error {
	if len(receipt) == 0 || len(receipt)+aead.Overhead > maxReceiptSealed {
		return fmt.Errorf("badgerstore: receipt of %d bytes out of range", len(receipt))
	}
	return s.updateNoRecords(ctx, func(txn *badger.Txn) error {
		b, err := get(txn, eventKey(seq))
		if errors.Is(err, vault.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		e, err := decodeEvent(b)
		if err != nil || e.subject == nil {
			return err
		}
		if e.receipt, err = s.ids.Seal.Seal(nil, receipt, eventAAD(seq, "receipt")); err != nil {
			return err
		}
		return txn.Set(eventKey(seq), e.encode())
	})
}

func (s *Store) RegisterConsumer(ctx context.Context, consumer string) error {
	if consumer == "" || len(consumer) > 256 {
		return fmt.Errorf("badgerstore: consumer name of %d bytes", len(consumer))
	}
	return s.updateNoRecords(ctx, func(txn *badger.Txn) error {
		err := absent(txn, key(pCursor, []byte(consumer)))
		if err == errExists {
			return nil
		}
		if err != nil {
			return err
		}
		// Before every retained event: the first one kept, minus one.
		first, err := firstEvent(txn)
		if err != nil {
			return err
		}
		return txn.Set(key(pCursor, []byte(consumer)), binary.BigEndian.AppendUint64(nil, first-1))
	})
}

// firstEvent is the oldest retained event's sequence, or the next one to
// be given if none is retained.
func firstEvent(txn *badger.Txn) (uint64, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pEvent)})
	defer it.Close()
	it.Rewind()
	if it.Valid() {
		k := it.Item().Key()
		if len(k) != 10 {
			return 0, fmt.Errorf("%w: erasure event key", vault.ErrCorrupt)
		}
		return binary.BigEndian.Uint64(k[2:]), nil
	}
	last, err := readCounter(txn, eventCounterKey)
	return last + 1, err
}

func (s *Store) Consumers(ctx context.Context) (out map[string]uint64, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		out = consumersIn(txn)
		return nil
	})
	return out, err
}

func consumersIn(txn *badger.Txn) map[string]uint64 {
	out := map[string]uint64{}
	prefix := key(pCursor)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil || len(v) != 8 {
			continue // cannot happen; an unreadable cursor holds nothing back
		}
		out[string(it.Item().Key()[len(prefix):])] = binary.BigEndian.Uint64(v)
	}
	return out
}

func (s *Store) ErasureEvents(ctx context.Context, after uint64, limit int) (out []vault.ErasureEvent, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pEvent), PrefetchValues: true, PrefetchSize: min(max(limit, 1), 100)})
		defer it.Close()
		for it.Seek(eventKey(after + 1)); it.Valid() && len(out) < limit; it.Next() {
			k := it.Item().Key()
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			e, err := decodeEvent(b)
			if err != nil || len(k) != 10 {
				return fmt.Errorf("%w: erasure event", vault.ErrCorrupt)
			}
			ev, err := s.openEvent(binary.BigEndian.Uint64(k[2:]), e)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

func (s *Store) AckErasures(ctx context.Context, consumer string, seq uint64) error {
	return s.updateNoRecords(ctx, func(txn *badger.Txn) error {
		cur, err := get(txn, key(pCursor, []byte(consumer)))
		if err != nil {
			return err // ErrNotFound: not registered
		}
		last, err := readCounter(txn, eventCounterKey)
		if err != nil {
			return err
		}
		if seq > last {
			return fmt.Errorf("%w: sequence %d is beyond the last erasure event (%d)", vault.ErrInvalidArgument, seq, last)
		}
		if len(cur) != 8 || binary.BigEndian.Uint64(cur) >= seq {
			return nil // never back
		}
		return txn.Set(key(pCursor, []byte(consumer)), binary.BigEndian.AppendUint64(nil, seq))
	})
}

// trimBatch bounds one trim transaction.
const trimBatch = 500

func (s *Store) TrimErasureEvents(ctx context.Context, cutoff time.Time) (changed int, err error) {
	for {
		n, more := 0, false
		err = s.updateNoRecords(ctx, func(txn *badger.Txn) error {
			n, more = 0, false
			cursors := consumersIn(txn)
			acked := uint64(0) // every event up to it is acknowledged by all
			if len(cursors) > 0 {
				acked = ^uint64(0)
				for _, c := range cursors {
					acked = min(acked, c)
				}
			}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pEvent), PrefetchValues: true})
			defer it.Close()
			type change struct {
				k, v []byte // v nil: delete
			}
			var changes []change
		scan:
			for it.Rewind(); it.Valid(); it.Next() {
				if len(changes) == trimBatch {
					more = true
					break
				}
				k := it.Item().KeyCopy(nil)
				seq := binary.BigEndian.Uint64(k[2:])
				b, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				e, err := decodeEvent(b)
				if err != nil {
					return err
				}
				expired := e.erasedAt.Before(cutoff)
				switch {
				case seq <= acked && len(cursors) > 0, len(cursors) == 0 && expired:
					changes = append(changes, change{k: k})
				case expired && e.subject != nil:
					// Past the retention: only the keyed hash is left for
					// the consumers still behind.
					e.subject, e.receipt = nil, nil
					changes = append(changes, change{k: k, v: e.encode()})
				case !expired:
					// Pending and within the retention: so is every later
					// event (sequence follows erasure time, up to a clock
					// step back, which a later pass catches up with), so a
					// trim reads only what it changes, not the whole log.
					break scan
				}
			}
			for _, c := range changes {
				var err error
				if c.v == nil {
					err = txn.Delete(c.k)
				} else {
					err = txn.Set(c.k, c.v)
				}
				if err != nil {
					return err
				}
			}
			n = len(changes)
			return nil
		})
		changed += n
		if err != nil || !more {
			return changed, err
		}
	}
}
