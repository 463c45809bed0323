package pgstore

import (
	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault"
)

// newIDKeys: the vault's StoreIDs (one implementation for every store)
// under this store's labels. The store owns its copy, zeroed on Close.
func newIDKeys(k *aead.Key) (*vault.StoreIDs, error) { return vault.NewStoreIDs(k, "pgstore") }

// idKeyCheckLen is how much of the key check (StoreIDs.Check) the
// database keeps.
const idKeyCheckLen = 16
