package pgstore

import (
	"crypto/sha256"
	"fmt"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// idKeys hash and seal subject ids (see the package doc). The store owns
// copies, zeroed on Close.
type idKeys struct {
	mac  *aead.Key // the ledger key
	seal *aead.Key
}

// noIDKey stands in when Options gives no key (tests only): ids are then
// still not stored in the clear, but anyone can test a guess.
var noIDKey = sha256.Sum256([]byte("tokenvault/pgstore/no-id-key: tests only"))

func newIDKeys(k *aead.Key) (*idKeys, error) {
	var err error
	var mac *aead.Key
	if k == nil {
		b := noIDKey
		mac, err = aead.KeyFromBytes(b[:])
	} else {
		mac, err = aead.KeyFromBytes(k.Bytes())
	}
	if err != nil {
		return nil, err
	}
	seal, err := vault.StoreSealKey(mac)
	if err != nil {
		mac.Zero()
		return nil, err
	}
	return &idKeys{mac: mac, seal: seal}, nil
}

func (k *idKeys) zero() {
	k.mac.Zero()
	k.seal.Zero()
}

func (k *idKeys) hash(subject string) ([]byte, error) {
	return vault.StoreSubjectHash(k.mac, subject)
}

// subjectAAD binds a sealed subject id to its key id: an id copied into
// another subject's row does not open.
func subjectAAD(id vault.KeyID) []byte {
	return append([]byte("tokenvault/pgstore/subject/v1"), id[:]...)
}

func (k *idKeys) sealSubject(id vault.KeyID, subject string) ([]byte, error) {
	return k.seal.Seal(nil, []byte(subject), subjectAAD(id))
}

func (k *idKeys) openSubject(id vault.KeyID, sealed []byte) (string, error) {
	b, err := k.seal.Open(nil, sealed, subjectAAD(id))
	if err != nil {
		return "", fmt.Errorf("%w: sealed subject id: %w", vault.ErrCorrupt, err)
	}
	return string(b), nil
}

// check is a value that identifies the key without revealing it.
func (k *idKeys) check() ([]byte, error) {
	m, err := k.mac.MAC([]byte("tokenvault/pgstore/id-key-check"))
	if err != nil {
		return nil, err
	}
	return m[:16], nil
}
