package vault

import (
	"crypto/sha256"
	"fmt"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// StoreIDs hash and seal subject ids for a store (see "Subject ids at
// rest" in store.go): every store of a vault keeps the same hashes and
// seals ids the same way, under labels of its own. A store owns its
// StoreIDs (copies of the keys) and zeroes them on Close.
type StoreIDs struct {
	// MAC is a copy of the ledger key ([StoreSubjectHash]'s key).
	MAC *aead.Key
	// Seal is [StoreSealKey]: subject ids, and what else a store keeps
	// of a subject only sealed (erasure events).
	Seal *aead.Key
	// store names the store in its labels ("badgerstore", "pgstore"): the
	// associated data of sealed ids and the key check, as stored.
	store string
}

// NewStoreIDs copies ledgerKey and derives the seal key. Without a key
// (tests only) a fixed public one stands in: ids are then still not
// stored in the clear, but anyone can test a guess.
func NewStoreIDs(ledgerKey *aead.Key, store string) (*StoreIDs, error) {
	var mac *aead.Key
	var err error
	if ledgerKey == nil {
		b := sha256.Sum256([]byte("tokenvault/" + store + "/no-id-key: tests only"))
		mac, err = aead.KeyFromBytes(b[:])
	} else {
		mac, err = aead.KeyFromBytes(ledgerKey.Bytes())
	}
	if err != nil {
		return nil, err
	}
	seal, err := StoreSealKey(mac)
	if err != nil {
		mac.Zero()
		return nil, err
	}
	return &StoreIDs{MAC: mac, Seal: seal, store: store}, nil
}

// Zero zeroes both keys.
func (k *StoreIDs) Zero() {
	k.MAC.Zero()
	k.Seal.Zero()
}

// Hash is [StoreSubjectHash].
func (k *StoreIDs) Hash(subject string) ([]byte, error) {
	return StoreSubjectHash(k.MAC, subject)
}

// subjectAAD binds a sealed subject id to its key id: an id copied into
// another subject's entry does not open.
func (k *StoreIDs) subjectAAD(id KeyID) []byte {
	return append([]byte("tokenvault/"+k.store+"/subject/v1"), id[:]...)
}

// SealSubject seals subject, bound to its key id.
func (k *StoreIDs) SealSubject(id KeyID, subject string) ([]byte, error) {
	return k.Seal.Seal(nil, []byte(subject), k.subjectAAD(id))
}

// OpenSubject opens what SealSubject sealed for id (ErrCorrupt if it does
// not open).
func (k *StoreIDs) OpenSubject(id KeyID, sealed []byte) (string, error) {
	b, err := k.Seal.Open(nil, sealed, k.subjectAAD(id))
	if err != nil {
		return "", fmt.Errorf("%w: sealed subject id: %w", ErrCorrupt, err)
	}
	return string(b), nil
}

// Check is n bytes (at most 32) that identify the ledger key without
// revealing it: a store keeps them, to refuse another key at open.
func (k *StoreIDs) Check(n int) ([]byte, error) {
	m, err := k.MAC.MAC([]byte("tokenvault/" + k.store + "/id-key-check"))
	if err != nil {
		return nil, err
	}
	return m[:n], nil
}
