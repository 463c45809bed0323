package pgstore

import (
	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// idKeys hash and seal subject ids: the vault's StoreIDs, under this
// store's labels (one implementation for every store). The store owns
// its copy, zeroed on Close.
type idKeys struct{ *vault.StoreIDs }

func newIDKeys(k *aead.Key) (*idKeys, error) {
	ids, err := vault.NewStoreIDs(k, "pgstore")
	if err != nil {
		return nil, err
	}
	return &idKeys{ids}, nil
}

func (k *idKeys) zero()                               { k.Zero() }
func (k *idKeys) hash(subject string) ([]byte, error) { return k.Hash(subject) }
func (k *idKeys) sealSubject(id vault.KeyID, subject string) ([]byte, error) {
	return k.SealSubject(id, subject)
}
func (k *idKeys) openSubject(id vault.KeyID, sealed []byte) (string, error) {
	return k.OpenSubject(id, sealed)
}

// check is a value that identifies the key without revealing it.
func (k *idKeys) check() ([]byte, error) { return k.Check(16) }
