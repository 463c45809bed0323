package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Subject ids at rest: the store layout and its migration.
//
// Layout 1 (before the layout marker) addressed subjects by their id in
// the clear, k/<subject> and i/<key id> -> subject, so that after an
// erasure badger's deletion markers, older table files and every backup
// still named who was erased. Layout 2 (badgerstore.go) keeps no subject
// id in the clear: subjects are addressed by [vault.StoreSubjectHash] (h/,
// and j/ maps a key id to it), and the id, which the vault needs back
// from a key id (Decrypt's result, rewrapping), is sealed under
// [vault.StoreSealKey] inside the subject key entry, which an erasure
// deletes. The layout version and a check value of the key are stored
// under v/layout.
//
// Layout 3 is layout 2 with record index entries shared by the runs of a
// batch, and records that name their run (index.go). Nothing is rewritten:
// a layout-2 directory is one already, and Open only raises its marker,
// so that an older tokenvault, which could not read a record written in
// a batch, refuses the directory instead of calling those records
// corrupt.
//
// Open migrates a layout-1 directory in place: batches of subjects, each
// copied to layout 2 in one transaction (the old entries stay), so a
// crash loses nothing and the next Open resumes; then every version and
// deletion marker of the old prefixes is dropped from the LSM tree at
// once (DB.DropPrefix, which rewrites the tables without them; deleting
// the old keys instead would only add markers that name them), and only
// then is the marker written.

var layoutKey = []byte("v/layout")

const (
	layoutVersion = 3
	layoutCheck   = 16 // bytes of the id-key check value in the marker
	// migrateBatch bounds one migration transaction.
	migrateBatch = 500
	// sealedSubjectMax bounds a sealed subject id in a subject key entry:
	// a subject id, or a hold key's pseudo-subject (vault.HoldSubject:
	// the id, a separator and a hold class).
	sealedSubjectMax = vault.MaxIDBytes + 1 + vault.MaxHoldClassBytes + aead.Overhead
)

// ErrWrongIDKey: the data directory was written with another subject-id
// key (the vault's ledger key) than the one the store was opened with;
// no subject would be found.
var ErrWrongIDKey = errors.New("badgerstore: the data directory was written with another ledger key (subject ids are hashed with it): restore ledger.key from the keys backup")

// newIDKeys: the vault's StoreIDs (one implementation for every store)
// under this store's labels. The store owns its copy, zeroed on Close.
func newIDKeys(k *aead.Key) (*vault.StoreIDs, error) { return vault.NewStoreIDs(k, "badgerstore") }

// marker is the layout marker: the layout version and a value that
// identifies the ledger key without revealing it.
func marker(k *vault.StoreIDs) ([]byte, error) {
	c, err := k.Check(layoutCheck)
	return append([]byte{layoutVersion}, c...), err
}

// layoutState reads the marker: ok false without one (layout 1, or a new
// directory).
func layoutState(txn *badger.Txn) (marker []byte, ok bool, err error) {
	b, err := get(txn, layoutKey)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// keyed reports whether db holds anything made with a subject-id key: a
// layout marker, or erasure-ledger entries (hashes under the same key).
// A missing key must then not be replaced by a new one.
func keyed(db *badger.DB) (bool, error) {
	found := false
	err := db.View(func(txn *badger.Txn) error {
		if _, ok, err := layoutState(txn); err != nil || ok {
			found = ok
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: key(pLedger)})
		defer it.Close()
		it.Rewind()
		found = it.Valid()
		return nil
	})
	return found, err
}

// upgrade brings the directory to the current layout (see the top of the
// file), or checks that it is there, with this key.
func (s *Store) upgrade(ctx context.Context) error {
	want, err := marker(s.ids)
	if err != nil {
		return err
	}
	var marker []byte
	var done bool
	if err := s.view(ctx, func(txn *badger.Txn) (err error) {
		marker, done, err = layoutState(txn)
		return err
	}); err != nil {
		return err
	}
	if done {
		switch {
		case len(marker) == 0 || marker[0] < 2:
			return fmt.Errorf("%w: layout marker", vault.ErrCorrupt)
		case marker[0] > layoutVersion:
			return fmt.Errorf("badgerstore: data directory layout version %d: written by a newer tokenvault", marker[0])
		case !bytes.Equal(marker[1:], want[1:]):
			return ErrWrongIDKey
		case marker[0] < layoutVersion:
			// Layout 2: nothing to rewrite (see the top of the file).
			if err := s.update(ctx, func(txn *badger.Txn) error { return txn.Set(layoutKey, want) }); err != nil {
				return err
			}
			s.log.Info("raised the data directory's layout version: records of a batch share index entries", "from", marker[0], "layout", layoutVersion)
		}
		return nil
	}
	moved, err := s.migrate(ctx)
	if err != nil {
		return fmt.Errorf("badgerstore: migrating to layout %d: %w", layoutVersion, err)
	}
	old, err := s.anyVersion(ctx, key(pKey), key(pKeyID))
	if err != nil {
		return err
	}
	if old {
		// DropPrefix does nothing for a prefix without a live key (it
		// would leave the deletion markers of erased subjects): a live
		// placeholder under each prefix makes it drop everything.
		if err := s.update(ctx, func(txn *badger.Txn) error {
			if err := txn.Set(key(pKey), nil); err != nil {
				return err
			}
			return txn.Set(key(pKeyID), nil)
		}); err != nil {
			return err
		}
		if err := s.db.DropPrefix(key(pKey), key(pKeyID)); err != nil {
			return fmt.Errorf("badgerstore: dropping the layout-1 entries: %w", err)
		}
	}
	if err := s.update(ctx, func(txn *badger.Txn) error { return txn.Set(layoutKey, want) }); err != nil {
		return err
	}
	if moved > 0 {
		s.log.Info("migrated the data directory: subject ids are no longer stored in the clear", "layout", layoutVersion, "subjects", moved)
	}
	return nil
}

// migrate copies every layout-1 subject key to layout 2, in batches of
// one transaction each, and returns how many subjects there were.
func (s *Store) migrate(ctx context.Context) (n int, err error) {
	after := key(pKey)
	for {
		var batch int
		var last []byte
		err := s.update(ctx, func(txn *badger.Txn) error {
			prefix := key(pKey)
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
			type old struct{ k, v []byte }
			var todo []old
			for it.Seek(after); it.Valid() && len(todo) < migrateBatch; it.Next() {
				if bytes.Equal(it.Item().Key(), after) {
					continue // the last one of the previous batch, or the placeholder
				}
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				todo = append(todo, old{it.Item().KeyCopy(nil), v})
			}
			it.Close()
			for _, o := range todo {
				subject := string(o.k[len(prefix):])
				sk, sealed, err := decodeSubjectKey(o.v)
				if err != nil {
					return err
				}
				if sealed != nil {
					return fmt.Errorf("%w: a layout-2 entry under a layout-1 key", vault.ErrCorrupt)
				}
				hk, err := s.subjectKeyOf(subject)
				if err != nil {
					return err
				}
				// A layout-2 entry for the subject is this migration's,
				// before a crash, or newer than any layout-1 one (a
				// restore of a layout-1 full backup and an incremental
				// taken after the migration brings both): it stays.
				switch err := absent(txn, hk); {
				case err == errExists:
				case err != nil:
					return err
				default:
					if err := s.putSubjectKey(txn, subject, sk); err != nil {
						return err
					}
				}
			}
			batch, last = len(todo), nil
			if batch > 0 {
				last = todo[batch-1].k
			}
			return nil
		})
		if last != nil {
			after = last // only once committed: a retried batch starts where it did
		}
		n += batch
		if err != nil || batch < migrateBatch {
			return n, err
		}
	}
}

// putSubjectKey writes sk as subject's key in layout 2.
func (s *Store) putSubjectKey(txn *badger.Txn, subject string, sk vault.SubjectKey) error {
	h, err := s.ids.Hash(subject)
	if err != nil {
		return err
	}
	sealed, err := s.ids.SealSubject(sk.ID, subject)
	if err != nil {
		return err
	}
	enc, err := encodeSubjectKey(sk, sealed)
	if err != nil {
		return err
	}
	if err := txn.Set(key(pHashed, h), enc); err != nil {
		return err
	}
	return txn.Set(key(pHashID, sk.ID[:]), h)
}

// anyVersion reports whether any version of any key under the prefixes
// exists, deletion markers included.
func (s *Store) anyVersion(ctx context.Context, prefixes ...[]byte) (found bool, err error) {
	err = s.view(ctx, func(txn *badger.Txn) error {
		for _, p := range prefixes {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p, AllVersions: true})
			it.Rewind()
			found = found || it.Valid()
			it.Close()
		}
		return nil
	})
	return found, err
}
