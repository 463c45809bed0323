package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// Consent records ([vault.ConsentStore]). Keys (added to layout 2; older
// directories simply have none):
//
//	c/<key id (16)><seq (8)>   -> tag (32) | sealed entry   (history, in order)
//	q/<key id (16)><tag (32)>  -> seq (8) | sealed entry    (latest entry per purpose)
//	n/c<key id (16)>           -> last seq (8)             (history counter)
//
// Everything is under the subject's key id, never its id or its hash, and
// sealed by the vault under the subject's data key; PurgeKey deletes it
// with the key's records. The counter is read and written by every append,
// so two concurrent appends conflict (and one retries) instead of both
// taking the same sequence number.

const (
	pConsent       = 'c'
	pConsentLatest = 'q'
	pCounter       = 'n'

	consentTagSize = 32
	// maxConsentSealed bounds a sealed entry: the vault's purpose and
	// source (256 bytes each) with its header.
	maxConsentSealed = 2*vault.MaxIDBytes + 12 + aead.Overhead
)

var _ vault.ConsentStore = (*Store)(nil)

func consentCounterKey(id vault.KeyID) []byte { return key(pCounter, []byte{pConsent}, id[:]) }

func checkConsentEntry(e vault.ConsentEntry) error {
	if len(e.Tag) != consentTagSize || len(e.Sealed) <= aead.Overhead || len(e.Sealed) > maxConsentSealed {
		return fmt.Errorf("badgerstore: consent entry out of range (tag %d bytes, sealed %d)", len(e.Tag), len(e.Sealed))
	}
	return nil
}

func (s *Store) AppendConsent(ctx context.Context, subject string, id vault.KeyID, e vault.ConsentEntry) error {
	if err := checkConsentEntry(e); err != nil {
		return err
	}
	hk, err := s.subjectKeyOf(subject)
	if err != nil {
		return err
	}
	return s.updateNoRecords(ctx, func(txn *badger.Txn) error {
		if _, _, err := liveKey(txn, hk, id); err != nil {
			return err
		}
		seq, err := readCounter(txn, consentCounterKey(id))
		if err != nil {
			return err
		}
		seq++
		sb := binary.BigEndian.AppendUint64(nil, seq)
		if err := txn.Set(consentCounterKey(id), sb); err != nil {
			return err
		}
		if err := txn.Set(key(pConsent, id[:], sb), append(append([]byte{}, e.Tag...), e.Sealed...)); err != nil {
			return err
		}
		return txn.Set(key(pConsentLatest, id[:], e.Tag), append(sb, e.Sealed...))
	})
}

// readCounter reads a counter (0 if absent).
func readCounter(txn *badger.Txn, k []byte) (uint64, error) {
	b, err := get(txn, k)
	if errors.Is(err, vault.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: counter", vault.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}

func (s *Store) LatestConsent(ctx context.Context, id vault.KeyID, tag []byte) (e vault.ConsentEntry, err error) {
	if len(tag) != consentTagSize {
		return e, fmt.Errorf("badgerstore: consent tag of %d bytes", len(tag))
	}
	err = s.view(ctx, func(txn *badger.Txn) error {
		b, err := get(txn, key(pConsentLatest, id[:], tag))
		if err != nil {
			return err
		}
		if len(b) <= 8+aead.Overhead {
			return fmt.Errorf("%w: latest consent entry", vault.ErrCorrupt)
		}
		e = vault.ConsentEntry{Tag: append([]byte{}, tag...), Sealed: b[8:]}
		return nil
	})
	return e, err
}

func (s *Store) ConsentHistory(ctx context.Context, id vault.KeyID, after uint64, limit int) (out []vault.ConsentEntry, err error) {
	prefix := key(pConsent, id[:])
	err = s.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(max(limit, 1), 100)})
		defer it.Close()
		for it.Seek(key(pConsent, id[:], binary.BigEndian.AppendUint64(nil, after+1))); it.Valid() && len(out) < limit; it.Next() {
			b, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(it.Item().Key()) != len(prefix)+8 || len(b) <= consentTagSize+aead.Overhead {
				return fmt.Errorf("%w: consent entry", vault.ErrCorrupt)
			}
			out = append(out, vault.ConsentEntry{Tag: b[:consentTagSize], Sealed: b[consentTagSize:]})
		}
		return nil
	})
	return out, err
}
