package vault

import (
	"context"

	"github.com/tokenvault/tokenvault/crypto/envelope"
)

// StoreAsBefore stores fields for subject the way Tokenize did before
// subject ids were checked for white space and values for being tokens:
// the data an older server may have left, which the vault must still
// reveal, export and erase.
func StoreAsBefore(ctx context.Context, v *Vault, subject string, fields []Field) ([]string, error) {
	all, err := v.checkFields(fields)
	if err != nil {
		return nil, err
	}
	return v.tokenizeChecked(ctx, subject, all) // without refuseTokens
}

// EncryptAsBefore seals plaintext for subject under blobContext the way
// Encrypt did before contexts were checked for white space.
func EncryptAsBefore(ctx context.Context, v *Vault, subject, blobContext string, plaintext []byte) ([]byte, error) {
	c, err := v.keysFor(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	defer c.release()
	bl := envelope.Blob{KeyID: c.id}
	if bl.Sealed, err = c.keys.blob.Seal(nil, plaintext, envelope.AAD(c.id, subject, blobContext)); err != nil {
		return nil, err
	}
	return bl.Marshal(nil), nil
}
