package badgerstore

import (
	"context"
	"crypto/sha256"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// CountTokens counts token records with a key-only scan, and returns once
// the lookup keys of the same snapshot are in the lookup filter too.
func (s *Store) CountTokens(ctx context.Context) (int64, error) {
	count, lookups, err := s.tokenCountSnapshot(ctx)
	if err != nil {
		return 0, err
	}
	n, done, err := count(ctx, 0)
	if done {
		select {
		case <-lookups:
		case <-ctx.Done(): // the scan goes on; the count is right
		}
	}
	return n, err
}

// countCheck is how many keys a count scans between checks of its
// context and of the store closing.
const countCheck = 4096

// TokenCountSnapshot pins a read transaction (badger's snapshot at its
// read timestamp) and returns a key-only count of the token records in
// it. The count also fills the token filter, used once the count has
// finished (filter.go: the snapshot is taken after the filter was made,
// and every later write adds to it). Then the lookup keys (d/) of the same
// snapshot are scanned into the lookup filter in the background: the
// token count is final already, and a start must not wait for them.
// Store.Close waits for a count and that scan until they are done or
// failed, which a running one does at its next check: a scan must not
// read tables that Close releases.
func (s *Store) TokenCountSnapshot(ctx context.Context) (func(context.Context, int64) (int64, bool, error), error) {
	count, _, err := s.tokenCountSnapshot(ctx)
	return count, err
}

// tokenCountSnapshot is TokenCountSnapshot; lookups is closed when the
// lookup keys' scan has ended (the lookup filter in use unless the store
// closed first).
func (s *Store) tokenCountSnapshot(ctx context.Context) (_ func(context.Context, int64) (int64, bool, error), lookups <-chan struct{}, _ error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.countMu.Lock()
	defer s.countMu.Unlock()
	if s.countClosed {
		return nil, nil, errors.New("badgerstore: store is closed")
	}
	s.counts.Add(1)
	txn := s.db.NewTransaction(false)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pToken)})
	it.Rewind()
	var total int64
	batch := &keyBatch{f: s.filter}
	scanned := make(chan struct{})
	finished := false
	fail := func() {
		finished = true
		it.Close()
		txn.Discard()
		close(scanned)
		s.counts.Done()
	}
	return func(ctx context.Context, limit int64) (int64, bool, error) {
		if finished {
			return total, true, errors.New("badgerstore: token count already finished")
		}
		for n := int64(0); it.Valid() && (limit <= 0 || n < limit); it.Next() {
			batch.addKey(it.Item().Key())
			n++
			if total++; total%countCheck == 0 {
				if err := s.countStopped(ctx); err != nil {
					fail()
					return total, false, err
				}
			}
		}
		if !it.Valid() {
			finished = true
			it.Close()
			batch.flush()
			s.filter.scanned()
			go s.scanLookups(txn, scanned) // ends txn and the count
			return total, true, nil
		}
		return total, false, nil
	}, scanned, nil
}

// scanLookups adds the lookup keys of txn's snapshot to the lookup filter,
// then puts that filter in use, discards txn, closes scanned and ends the
// count. It stops early, leaving the filter unused, if the store closes.
func (s *Store) scanLookups(txn *badger.Txn, scanned chan struct{}) {
	defer s.counts.Done()
	defer close(scanned)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pLookup)})
	defer it.Close()
	batch := &keyBatch{f: s.lookups}
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		batch.addHash(sha256.Sum256(it.Item().Key()))
		if n++; n%countCheck == 0 && s.countStopped(context.Background()) != nil {
			return
		}
	}
	batch.flush()
	s.lookups.scanned()
}

// countStopped reports why a count must stop, if it must.
func (s *Store) countStopped(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.closing:
		return errors.New("badgerstore: store closed while counting tokens")
	default:
		return nil
	}
}

// RunGC runs badger's value-log garbage collection until it finds nothing
// worth rewriting, and reports how many value-log files it rewrote.
// Erased subjects' sealed records live on in value-log files until they are
// rewritten; GC is what eventually drops them from disk.
//
// A rewrite writes the live part of a value-log file before the file is
// deleted: GC runs only while that much is free above the disk reserve
// (space.go), and otherwise stops without an error, to run again at the
// next interval.
func (s *Store) RunGC(discardRatio float64) (rewrites int, err error) {
	for {
		if !s.space.above(minGCSpace) {
			return rewrites, nil
		}
		err := s.db.RunValueLogGC(discardRatio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return rewrites, nil
		}
		if err != nil {
			return rewrites, err
		}
		rewrites++
	}
}

// Size reports the on-disk size of the LSM tree and the value log.
func (s *Store) Size() (lsm, vlog int64) { return s.db.Size() }
