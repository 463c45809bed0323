package badgerstore

import (
	"context"
	"crypto/sha256"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// CountTokens counts token records with a key-only scan.
func (s *Store) CountTokens(ctx context.Context) (int64, error) {
	count, err := s.TokenCountSnapshot(ctx)
	if err != nil {
		return 0, err
	}
	n, _, err := count(ctx, 0)
	return n, err
}

// countCheck is how many keys a count scans between checks of its
// context and of the store closing.
const countCheck = 4096

// TokenCountSnapshot pins a read transaction (badger's snapshot at its
// read timestamp) and returns a key-only count of the token records in
// it. The count also fills the token filter, used once the token keys
// are scanned, and then scans the lookup keys (d/) of the same snapshot
// into the lookup filter, used once that second pass is done (filter.go:
// the snapshot is taken after the filters were made, and every later
// write adds to them); it reports done after both. Store.Close waits for
// a count until it is done or failed, which a running count does at its
// next check: a scan must not read tables that Close releases.
func (s *Store) TokenCountSnapshot(ctx context.Context) (func(context.Context, int64) (int64, bool, error), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.countMu.Lock()
	defer s.countMu.Unlock()
	if s.countClosed {
		return nil, errors.New("badgerstore: store is closed")
	}
	s.counts.Add(1)
	txn := s.db.NewTransaction(false)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pToken)})
	it.Rewind()
	var total, scanned int64
	batch := &keyBatch{f: s.filter}
	lookups := false // in the second pass
	finished := false
	finish := func() {
		finished = true
		it.Close()
		txn.Discard()
		s.counts.Done()
	}
	return func(ctx context.Context, limit int64) (int64, bool, error) {
		if finished {
			return total, true, errors.New("badgerstore: token count already finished")
		}
		for n := int64(0); limit <= 0 || n < limit; n++ {
			if !it.Valid() {
				batch.flush()
				if lookups {
					finish()
					s.lookups.scanned()
					return total, true, nil
				}
				s.filter.scanned()
				it.Close()
				it = txn.NewIterator(badger.IteratorOptions{Prefix: key(pLookup)})
				it.Rewind()
				batch, lookups = &keyBatch{f: s.lookups}, true
				continue
			}
			if k := it.Item().Key(); lookups {
				batch.addHash(sha256.Sum256(k))
			} else {
				batch.addKey(k)
				total++
			}
			if scanned++; scanned%countCheck == 0 {
				if err := s.countStopped(ctx); err != nil {
					finish()
					return total, false, err
				}
			}
			it.Next()
		}
		return total, false, nil
	}, nil
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
