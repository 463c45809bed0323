package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/vault"
)

// Store methods for data-subject rights: export (KeyRecords),
// rectification (ReplaceRecord), restriction (SetRestricted), retention
// (the x/ expiry index, PurgeExpired, DeleteRecord) and the erasure ledger
// (e/ entries, written by ShredSubject in the shred's own transaction).

const ledgerHashSize = 32

func (s *Store) KeyRecords(ctx context.Context, id vault.KeyID, after string, limit int) (out []vault.Record, err error) {
	if limit <= 0 {
		return nil, nil
	}
	var ag, ah []byte // the cursor's group and record hash
	if after != "" {
		if ag, ah, err = parseCursor(after); err != nil {
			return nil, err
		}
	}
	err = s.view(ctx, func(txn *badger.Txn) error {
		prefix := key(pIndex, id[:])
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		start := prefix
		if ag != nil {
			start = key(pIndex, id[:], ag)
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			g := it.Item().KeyCopy(nil)[len(prefix):]
			val, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			members, err := groupMembers(g, val)
			if err != nil {
				return err
			}
			resume := ag != nil && bytes.Equal(g, ag)
			for _, h := range members {
				if len(out) == limit {
					break
				}
				if resume && bytes.Compare(h, ah) <= 0 {
					continue // listed before the cursor
				}
				b, err := get(txn, key(pToken, h))
				if errors.Is(err, vault.ErrNotFound) {
					return fmt.Errorf("%w: record index points at a missing record", vault.ErrCorrupt)
				}
				if err != nil {
					return err
				}
				r, err := decodeRecord(b)
				if err != nil {
					return err
				}
				r.Cursor = listCursor(g, h)
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

func (s *Store) ReplaceRecord(ctx context.Context, subject string, id vault.KeyID, r vault.Record) error {
	if r.KeyID != id {
		return fmt.Errorf("badgerstore: replacement record under another key")
	}
	// Encoded here to refuse a bad record early; in the transaction again
	// with the old record's group (grouped records are 32 bytes longer).
	enc, err := encodeRecord(r, nil)
	if err != nil {
		return err
	}
	h := tokenHash(r.Token)
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return err
	}
	var lk []byte // the new lookup key, if the lookup changes
	var lh [sha256.Size]byte
	var w weight
	w.set(tokenKeyLen, len(enc)+sha256.Size)
	w.set(2+len(id)+lookupSize, 0) // the old lookup's deletion
	if r.Lookup != nil {
		lk = lookupKey(nil, id, r.Lookup)
		lh = sha256.Sum256(lk)
		w.set(len(lk), len(r.Token))
	}
	w.set(expiryKeyLen, 0)
	w.set(expiryKeyLen, len(id))
	// A committer op, like PutRecords, because it may create a lookup
	// key: the lookup filter lets a group skip reading a lookup key it
	// rules out, which is safe only if every op that may create one adds
	// it to the filter in the committer's order (filter.go). Every refusal
	// comes before the first write, so it is one for the group too
	// (rejected, group.go).
	return s.group.doToken(ctx, (*[sha256.Size]byte)(h), w, func(txn *badger.Txn) error {
		if lk != nil {
			s.lookups.add(&lh) // first, in every run, whatever it decides
		}
		// Reading the subject key makes a concurrent shred conflict with
		// this transaction (see PutRecords).
		if _, _, err := liveKey(txn, hk, id); err != nil {
			return err
		}
		b, err := get(txn, key(pToken, h))
		if errors.Is(err, vault.ErrNotFound) {
			return refusal{err} // deleted meanwhile
		}
		if err != nil {
			return err
		}
		old, group, err := decodeGrouped(b)
		if err != nil {
			return err
		}
		if old.KeyID != id || old.Token != r.Token {
			return refusal{vault.ErrNotFound}
		}
		if r.Lookup != nil && !bytes.Equal(r.Lookup, old.Lookup) {
			tok, err := get(txn, lk)
			switch {
			case err == nil && string(tok) != r.Token:
				return &vault.CollisionError{Lookup: true}
			case err != nil && !errors.Is(err, vault.ErrNotFound):
				return err
			}
		}
		// Checks done; writes follow.
		if old.Lookup != nil {
			tok, err := get(txn, key(pLookup, id[:], old.Lookup))
			if err == nil && string(tok) == r.Token {
				if err := txn.Delete(key(pLookup, id[:], old.Lookup)); err != nil {
					return err
				}
			} else if err != nil && !errors.Is(err, vault.ErrNotFound) {
				return err
			}
		}
		if lk != nil {
			if err := txn.Set(lk, []byte(r.Token)); err != nil {
				return err
			}
		}
		if !old.Expires.Equal(r.Expires) {
			if !old.Expires.IsZero() {
				if err := txn.Delete(expiryKey(old.Expires, h)); err != nil {
					return err
				}
			}
			if !r.Expires.IsZero() {
				if err := txn.Set(expiryKey(r.Expires, h), id[:]); err != nil {
					return err
				}
			}
		}
		// The record stays in its group: its index entry lists it.
		enc, err := encodeRecord(r, group)
		if err != nil {
			return err
		}
		return txn.Set(key(pToken, h), enc)
	})
}

func (s *Store) SetRestricted(ctx context.Context, subject string, since time.Time) error {
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return err
	}
	return s.updateNoRecords(ctx, func(txn *badger.Txn) error {
		sk, err := subjectKey(txn, hk)
		if err != nil {
			return err
		}
		if since.IsZero() {
			return txn.Delete(key(pRestrict, sk.ID[:]))
		}
		return txn.Set(key(pRestrict, sk.ID[:]), binary.BigEndian.AppendUint64(nil, uint64(since.UnixNano())))
	})
}

func restrictedSince(txn *badger.Txn, id vault.KeyID) (time.Time, error) {
	b, err := get(txn, key(pRestrict, id[:]))
	if errors.Is(err, vault.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return decodeTime(b, "restriction mark")
}

func decodeTime(b []byte, what string) (time.Time, error) {
	if len(b) != 8 {
		return time.Time{}, fmt.Errorf("%w: %s", vault.ErrCorrupt, what)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC(), nil
}

// expiryKey orders the expiry index by time, so the purge reads only
// what is due.
func expiryKey(t time.Time, tokenHash []byte) []byte {
	return key(pExpiry, binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())), tokenHash)
}

// deleteExpiryEntry removes the expiry index entry of the record stored
// under hash, if it has one.
func deleteExpiryEntry(txn *badger.Txn, hash []byte) error {
	b, err := get(txn, key(pToken, hash))
	if errors.Is(err, vault.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	r, err := decodeRecord(b)
	if err != nil || r.Expires.IsZero() {
		return err
	}
	return txn.Delete(expiryKey(r.Expires, hash))
}

// deleteRecord deletes the record under hash with everything that points
// at it. ok is false if there is no such record.
func deleteRecord(txn *badger.Txn, hash []byte) (ok bool, err error) {
	b, err := get(txn, key(pToken, hash))
	if errors.Is(err, vault.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r, group, err := decodeGrouped(b)
	if err != nil {
		return false, err
	}
	if group == nil {
		group = hash
	}
	if r.Lookup != nil {
		tok, err := get(txn, key(pLookup, r.KeyID[:], r.Lookup))
		if err == nil && string(tok) == r.Token {
			if err := txn.Delete(key(pLookup, r.KeyID[:], r.Lookup)); err != nil {
				return false, err
			}
		} else if err != nil && !errors.Is(err, vault.ErrNotFound) {
			return false, err
		}
	}
	if !r.Expires.IsZero() {
		if err := txn.Delete(expiryKey(r.Expires, hash)); err != nil {
			return false, err
		}
	}
	if err := dropFromGroup(txn, r.KeyID, group, hash); err != nil {
		return false, err
	}
	return true, txn.Delete(key(pToken, hash))
}

func (s *Store) DeleteRecord(ctx context.Context, token string) error {
	h := tokenHash(token)
	var w weight
	w.set(tokenKeyLen, 0)
	w.set(indexKeyLen, groupMax*sha256.Size) // the rewritten index entry
	w.set(2+len(vault.KeyID{})+lookupSize, 0)
	w.set(expiryKeyLen, 0)
	// A committer op: deleting a record of a batch rewrites the index
	// entry its run shares (index.go). Concurrent deletes of one run in
	// transactions of their own conflict on it, and enough of them at once
	// (the expired deterministic tokens of a batch, replaced by parallel
	// calls) outlast the retries; in one group each sees the ones before.
	return s.group.doToken(ctx, (*[sha256.Size]byte)(h), w, func(txn *badger.Txn) error {
		ok, err := deleteRecord(txn, h)
		if err == nil && !ok {
			return refusal{vault.ErrNotFound} // before any write
		}
		return err
	})
}

func (s *Store) PurgeExpired(ctx context.Context, now time.Time, limit int) (n int, err error) {
	if limit <= 0 {
		return 0, nil
	}
	limit = min(limit, purgeBatch)
	end := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	// The usual pass finds nothing due: a read says so without a write
	// transaction, which would also empty the record cache (update).
	var anyDue bool
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pExpiry)})
		defer it.Close()
		if it.Rewind(); !it.Valid() {
			return nil
		}
		var err error
		anyDue, err = expiryDue(it.Item().Key(), end)
		return err
	})
	if err != nil || !anyDue {
		return 0, err
	}
	err = s.update(ctx, func(txn *badger.Txn) error {
		n = 0
		prefix := key(pExpiry)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var due [][]byte
		for it.Rewind(); it.Valid() && len(due) < limit; it.Next() {
			ok, err := expiryDue(it.Item().Key(), end)
			if err != nil {
				it.Close()
				return err
			}
			if !ok {
				break // ordered by time: nothing later is due
			}
			due = append(due, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range due {
			// The record may be gone already (erased): drop the stale
			// index entry either way.
			if _, err := deleteRecord(txn, k[len(prefix)+8:]); err != nil {
				return err
			}
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	return n, err
}

// expiryDue reports whether the expiry index key k (x/<time><hash>) is
// due at end, an encoded time; a key of another size is corruption.
func expiryDue(k, end []byte) (bool, error) {
	if len(k) != expiryKeyLen {
		return false, fmt.Errorf("%w: expiry index key", vault.ErrCorrupt)
	}
	return bytes.Compare(k[2:2+8], end) <= 0, nil
}

func putLedger(txn *badger.Txn, e vault.LedgerEntry) error {
	if len(e.Hash) != ledgerHashSize {
		return fmt.Errorf("badgerstore: ledger hash of %d bytes, want %d", len(e.Hash), ledgerHashSize)
	}
	at := e.ErasedAt
	b, err := get(txn, key(pLedger, e.Hash))
	if err == nil {
		old, err := decodeTime(b, "ledger entry")
		if err != nil {
			return err
		}
		if old.After(at) {
			return nil
		}
	} else if !errors.Is(err, vault.ErrNotFound) {
		return err
	}
	return txn.Set(key(pLedger, e.Hash), binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())))
}

func (s *Store) PutLedgerEntries(ctx context.Context, entries []vault.LedgerEntry) error {
	for len(entries) > 0 {
		batch := entries[:min(len(entries), purgeBatch)]
		entries = entries[len(batch):]
		err := s.update(ctx, func(txn *badger.Txn) error {
			for _, e := range batch {
				if err := putLedger(txn, e); err != nil {
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

func (s *Store) LedgerEntries(ctx context.Context, after []byte, limit int) (out []vault.LedgerEntry, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		prefix := key(pLedger)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(max(limit, 1), 100)})
		defer it.Close()
		start := key(pLedger, after)
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			h := it.Item().KeyCopy(nil)[len(prefix):]
			if after != nil && bytes.Equal(h, after) {
				continue
			}
			if len(h) != ledgerHashSize {
				return fmt.Errorf("%w: ledger key", vault.ErrCorrupt)
			}
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			at, err := decodeTime(b, "ledger entry")
			if err != nil {
				return err
			}
			out = append(out, vault.LedgerEntry{Hash: h, ErasedAt: at})
		}
		return nil
	})
	return out, err
}
