package agekeyring

import (
	"encoding/binary"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// WrapUnbound wraps dek under the current version in format 1, as Wrap did
// before wraps were bound to associated data (the golden blob in
// testdata/legacy-v1, written by that code, checks that this is the same
// format).
func WrapUnbound(p Provider, dek []byte) ([]byte, error) {
	kr := p.(*keyring)
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([]byte, wrappedHeader, wrappedHeader+aead.Overhead+len(dek))
	out[0] = formatUnbound
	binary.BigEndian.PutUint32(out[1:], uint32(kr.current))
	return kr.versions[kr.current].key.Seal(out, dek, wrapAAD(formatUnbound, kr.current, nil))
}
