package badgerstore

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// CountTokens counts token records with a key-only scan.
func (s *Store) CountTokens(ctx context.Context) (n int64, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pToken)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
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
