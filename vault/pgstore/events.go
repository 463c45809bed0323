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
)

// Erasure events ([vault.ErasureEventStore]), in tokenvault_erasure_events
// and tokenvault_erasure_cursors (schema version 2).
//
// Commit order. A consumer reads the events after its cursor, so an event
// must never commit after one with a higher number: it would be skipped.
// A sequence does not give that (nextval is taken inside the transaction,
// and transactions commit in any order), so the number comes from the
// counter row tokenvault_counters('erasure_events'), incremented by
// UPDATE … RETURNING at the end of the shred's transaction (only the
// event's insert follows: its sealed id is bound to the number).
// The row stays locked until that transaction ends: the next shred's
// UPDATE waits for the commit (or rollback: then it gets the same number,
// so there are no gaps either) and then reads the committed value. So
// numbers are given in commit order, and every snapshot sees a prefix of
// them. The price is that erasures serialize on the row for the length of
// one commit — erasures are rare, and everything else about them (the
// key delete, the ledger, the purge) runs concurrently. No advisory lock
// and no LISTEN/NOTIFY is needed for it, so it holds on
// PostgreSQL-compatible distributed engines as well (where a concurrent
// update of the row is a serialization failure, retried by s.tx).
//
// The subject id and the receipt (which names the subject) are sealed
// under the store seal key, bound to the event's number and to what they
// are, so that no subject id is in the clear even in a pending event;
// "dropped" sets both to NULL.

var _ vault.ErasureEventStore = (*Store)(nil)

const (
	// maxReceipt bounds a receipt file (receipt files are at most 16 KiB).
	maxReceipt = 16 << 10
	// maxConsumer bounds a consumer name, as in the badger store (the
	// vault allows 128 bytes).
	maxConsumer = 256
	// eventCounter is the counter row of erasure event numbers.
	eventCounter = "erasure_events"
)

func eventAAD(seq int64, what string) []byte {
	return binary.BigEndian.AppendUint64([]byte("tokenvault/pgstore/erasure-event/v1/"+what+"/"), uint64(seq))
}

func (s *Store) ShredErasure(ctx context.Context, subject string, ledger vault.LedgerEntry, ev vault.ErasureEvent) (vault.ErasureEvent, error) {
	var out vault.ErasureEvent
	if ledger.Hash != nil && len(ledger.Hash) != ledgerHashSize {
		return out, fmt.Errorf("pgstore: ledger hash of %d bytes, want %d", len(ledger.Hash), ledgerHashSize)
	}
	h, err := s.hashOf(subject)
	if err != nil {
		return out, err
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		id, err := s.shredHoldingIn(ctx, tx, h, ledger, ev.Holds)
		if err != nil {
			return err
		}
		// Last, so that the counter row is held only for the event's
		// insert and the commit (see the top of this file).
		var seq int64
		err = tx.QueryRow(ctx, `UPDATE tokenvault_counters SET n = n + 1 WHERE name = $1 RETURNING n`, eventCounter).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: no erasure event counter (schema version 2 incomplete)", vault.ErrCorrupt)
		}
		if err != nil {
			return err
		}
		sealed, err := s.ids.Seal.Seal(nil, []byte(subject), eventAAD(seq, "subject"))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tokenvault_erasure_events (seq, erased_at_ns, key_id, sealed_subject) VALUES ($1, $2, $3, $4)`,
			seq, ev.ErasedAt.UnixNano(), id[:], sealed); err != nil {
			return err
		}
		out = vault.ErasureEvent{Seq: uint64(seq), Subject: subject, ErasedAt: time.Unix(0, ev.ErasedAt.UnixNano()).UTC(), KeyID: id}
		return nil
	})
	if err != nil {
		return vault.ErasureEvent{}, err
	}
	return out, nil
}

// seqArg is seq as a bigint; ok is false beyond any stored number.
func seqArg(seq uint64) (int64, bool) {
	if seq > math.MaxInt64 {
		return 0, false
	}
	return int64(seq), true
}

func (s *Store) AttachReceipt(ctx context.Context, seq uint64, receipt []byte) error {
	if len(receipt) == 0 || len(receipt) > maxReceipt {
		return fmt.Errorf("pgstore: receipt of %d bytes out of range", len(receipt))
	}
	n, ok := seqArg(seq)
	if !ok {
		return nil
	}
	sealed, err := s.ids.Seal.Seal(nil, receipt, eventAAD(n, "receipt"))
	if err != nil {
		return err
	}
	// No-op for an event that is gone or whose subject id was dropped.
	_, err = s.pool.Exec(ctx, `UPDATE tokenvault_erasure_events SET sealed_receipt = $2 WHERE seq = $1 AND sealed_subject IS NOT NULL`, n, sealed)
	return err
}

func (s *Store) RegisterConsumer(ctx context.Context, consumer string) error {
	if consumer == "" || len(consumer) > maxConsumer {
		return fmt.Errorf("pgstore: consumer name of %d bytes", len(consumer))
	}
	// Before every retained event: the first one kept, minus one, or the
	// last number given if none is kept. An erasure committing meanwhile
	// gets a higher number than either, so the new cursor is before it.
	_, err := s.pool.Exec(ctx, `INSERT INTO tokenvault_erasure_cursors (consumer, acked)
		SELECT $1, COALESCE((SELECT min(seq) - 1 FROM tokenvault_erasure_events), (SELECT n FROM tokenvault_counters WHERE name = $2), 0)
		ON CONFLICT (consumer) DO NOTHING`, consumer, eventCounter)
	if err != nil {
		return fmt.Errorf("pgstore: registering an erasure consumer: %w", err)
	}
	return nil
}

func (s *Store) Consumers(ctx context.Context) (map[string]uint64, error) {
	rows, err := s.q.Query(ctx, `SELECT consumer, acked FROM tokenvault_erasure_cursors`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var c string
		var acked int64
		if err := rows.Scan(&c, &acked); err != nil {
			return nil, err
		}
		if acked < 0 {
			return nil, fmt.Errorf("%w: erasure cursor", vault.ErrCorrupt)
		}
		out[c] = uint64(acked)
	}
	return out, rows.Err()
}

func (s *Store) ErasureEvents(ctx context.Context, after uint64, limit int) ([]vault.ErasureEvent, error) {
	a, ok := seqArg(after)
	if !ok || limit <= 0 {
		return nil, nil
	}
	rows, err := s.q.Query(ctx, `SELECT seq, erased_at_ns, key_id, sealed_subject, sealed_receipt FROM tokenvault_erasure_events
		WHERE seq > $1 ORDER BY seq LIMIT $2`, a, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.ErasureEvent
	for rows.Next() {
		var seq, at int64
		var rid, subject, receipt []byte
		if err := rows.Scan(&seq, &at, &rid, &subject, &receipt); err != nil {
			return nil, err
		}
		ev, err := s.openEvent(seq, at, rid, subject, receipt)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

func (s *Store) openEvent(seq, at int64, rid, subject, receipt []byte) (vault.ErasureEvent, error) {
	ev := vault.ErasureEvent{Seq: uint64(seq), ErasedAt: time.Unix(0, at).UTC()}
	if seq <= 0 || len(rid) != len(ev.KeyID) || (subject == nil && receipt != nil) {
		return ev, fmt.Errorf("%w: erasure event", vault.ErrCorrupt)
	}
	copy(ev.KeyID[:], rid)
	if subject != nil {
		b, err := s.ids.Seal.Open(nil, subject, eventAAD(seq, "subject"))
		if err != nil {
			return ev, fmt.Errorf("%w: erasure event subject: %w", vault.ErrCorrupt, err)
		}
		ev.Subject = string(b)
	}
	if receipt != nil {
		b, err := s.ids.Seal.Open(nil, receipt, eventAAD(seq, "receipt"))
		if err != nil {
			return ev, fmt.Errorf("%w: erasure event receipt: %w", vault.ErrCorrupt, err)
		}
		ev.Receipt = b
	}
	return ev, nil
}

func (s *Store) AckErasures(ctx context.Context, consumer string, seq uint64) error {
	var acked *int64
	var last int64
	err := s.pool.QueryRow(ctx, `SELECT (SELECT acked FROM tokenvault_erasure_cursors WHERE consumer = $1), n FROM tokenvault_counters WHERE name = $2`,
		consumer, eventCounter).Scan(&acked, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: no erasure event counter (schema version 2 incomplete)", vault.ErrCorrupt)
	}
	if err != nil {
		return err
	}
	if acked == nil {
		return vault.ErrNotFound // not registered
	}
	n, ok := seqArg(seq)
	if !ok || n > last {
		return fmt.Errorf("%w: sequence %d is beyond the last erasure event (%d)", vault.ErrInvalidArgument, seq, last)
	}
	// Never back, also against a concurrent acknowledgement.
	_, err = s.pool.Exec(ctx, `UPDATE tokenvault_erasure_cursors SET acked = $2 WHERE consumer = $1 AND acked < $2`, consumer, n)
	return err
}

// trimBatch bounds one trim statement.
const trimBatch = 500

func (s *Store) TrimErasureEvents(ctx context.Context, cutoff time.Time) (int, error) {
	var consumers int64
	var low *int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(acked) FROM tokenvault_erasure_cursors`).Scan(&consumers, &low); err != nil {
		return 0, err
	}
	c := cutoff.UnixNano()
	// What every registered consumer acknowledged goes; with no consumer
	// at all, what is past the retention goes (nobody is owed it).
	del := `DELETE FROM tokenvault_erasure_events WHERE seq IN
		(SELECT seq FROM tokenvault_erasure_events WHERE seq <= $1 ORDER BY seq LIMIT $2)`
	arg := int64(0)
	if consumers > 0 && low != nil {
		arg = *low
	} else {
		del = `DELETE FROM tokenvault_erasure_events WHERE seq IN
			(SELECT seq FROM tokenvault_erasure_events WHERE erased_at_ns < $1 ORDER BY erased_at_ns LIMIT $2)`
		arg = c
	}
	changed, err := s.inBatches(ctx, del, arg)
	if err != nil {
		return changed, err
	}
	// Past the retention, only the key id and time stay for the consumers
	// still behind.
	n, err := s.inBatches(ctx, `UPDATE tokenvault_erasure_events SET sealed_subject = NULL, sealed_receipt = NULL WHERE seq IN
		(SELECT seq FROM tokenvault_erasure_events WHERE erased_at_ns < $1 AND sealed_subject IS NOT NULL ORDER BY erased_at_ns LIMIT $2)`, c)
	return changed + n, err
}

// inBatches runs stmt (arguments arg and trimBatch) until it changes
// fewer than trimBatch rows, and returns how many it changed.
func (s *Store) inBatches(ctx context.Context, stmt string, arg int64) (int, error) {
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, stmt, arg, trimBatch)
		if err != nil {
			return total, fmt.Errorf("pgstore: trimming erasure events: %w", err)
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < trimBatch {
			return total, nil
		}
	}
}

// Copying another store's event log in (restores, from the badger staging
// store; backups copy this store's log into one through the same two
// methods of the badger store): see copyErasureLog.

// erasureLogCopier is a store that takes a copy of an event log.
type erasureLogCopier interface {
	// PutErasureEvents stores events under their numbers and raises the
	// last number given to the highest.
	PutErasureEvents(ctx context.Context, evs []vault.ErasureEvent) error
	// PutErasureCursors sets consumers' cursors and raises the last
	// number given to the highest.
	PutErasureCursors(ctx context.Context, cursors map[string]uint64) error
}

func (s *Store) PutErasureEvents(ctx context.Context, evs []vault.ErasureEvent) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		var last int64
		for _, ev := range evs {
			seq, ok := seqArg(ev.Seq)
			if !ok || seq == 0 || (ev.Subject == "" && ev.Receipt != nil) || len(ev.Receipt) > maxReceipt {
				return fmt.Errorf("pgstore: copied erasure event %d out of range", ev.Seq)
			}
			var subject, receipt []byte
			var err error
			if ev.Subject != "" {
				if subject, err = s.ids.Seal.Seal(nil, []byte(ev.Subject), eventAAD(seq, "subject")); err != nil {
					return err
				}
			}
			if ev.Receipt != nil {
				if receipt, err = s.ids.Seal.Seal(nil, ev.Receipt, eventAAD(seq, "receipt")); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tokenvault_erasure_events (seq, erased_at_ns, key_id, sealed_subject, sealed_receipt) VALUES ($1, $2, $3, $4, $5)`,
				seq, ev.ErasedAt.UnixNano(), ev.KeyID[:], subject, receipt); err != nil {
				return err
			}
			last = max(last, seq)
		}
		return raiseEventCounter(ctx, tx, last)
	})
}

func (s *Store) PutErasureCursors(ctx context.Context, cursors map[string]uint64) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		var last int64
		for c, seq := range cursors {
			n, ok := seqArg(seq)
			if c == "" || len(c) > maxConsumer || !ok {
				return fmt.Errorf("pgstore: copied erasure cursor out of range (name of %d bytes)", len(c))
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tokenvault_erasure_cursors (consumer, acked) VALUES ($1, $2)
				ON CONFLICT (consumer) DO UPDATE SET acked = GREATEST(tokenvault_erasure_cursors.acked, excluded.acked)`, c, n); err != nil {
				return err
			}
			last = max(last, n)
		}
		return raiseEventCounter(ctx, tx, last)
	})
}

func raiseEventCounter(ctx context.Context, tx pgx.Tx, last int64) error {
	_, err := tx.Exec(ctx, `UPDATE tokenvault_counters SET n = GREATEST(n, $2) WHERE name = $1`, eventCounter, last)
	return err
}

// copyPage bounds the events copied in one transaction (a receipt is up
// to 16 KiB).
const copyPage = 100

// copyErasureLog copies src's erasure events and cursors into dst, if src
// keeps them.
func copyErasureLog(ctx context.Context, src, dst vault.Store) error {
	se, ok := src.(vault.ErasureEventStore)
	if !ok {
		return nil
	}
	dc, ok := dst.(erasureLogCopier)
	if !ok {
		return fmt.Errorf("pgstore: %T takes no copy of an erasure event log", dst)
	}
	for after := uint64(0); ; {
		page, err := se.ErasureEvents(ctx, after, copyPage)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		if err := dc.PutErasureEvents(ctx, page); err != nil {
			return err
		}
		after = page[len(page)-1].Seq
	}
	cursors, err := se.Consumers(ctx)
	if err != nil {
		return err
	}
	return dc.PutErasureCursors(ctx, cursors)
}
