// Package envelope defines the field-encryption blob that tokenvault's
// Encrypt returns and callers keep in their own databases:
//
//	blob = version(1) | keyIDLen(1) | keyID | sealed
//	sealed = nonce(12) | ciphertext | tag(16)    (AES-256-GCM, see crypto/aead)
//
// The key id names the data subject's key without naming the subject, so a
// blob at rest leaks neither who it belongs to nor the value. The version
// byte lets the format change later without guessing. Parsing is strict:
// an unknown version, a key id of the wrong size, a short or oversize
// blob is rejected before any key is looked up.
package envelope

import (
	"errors"
	"fmt"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

const (
	// Version1 is the only blob version so far.
	Version1 = 1
	// KeyIDSize is the size of a subject key id.
	KeyIDSize = 16
	// MaxPlaintext bounds what one blob may hold (64 KiB, the vault's
	// per-value limit).
	MaxPlaintext = 64 << 10

	headerSize = 2 + KeyIDSize
	// MaxSize is the largest valid blob.
	MaxSize = headerSize + aead.Overhead + MaxPlaintext
	// MinSize is the smallest valid blob (empty plaintext).
	MinSize = headerSize + aead.Overhead
)

// ErrMalformed reports a blob that is not a well-formed tokenvault blob.
var ErrMalformed = errors.New("envelope: malformed blob")

// KeyID identifies a subject's data key.
type KeyID [KeyIDSize]byte

// Blob is a parsed blob.
type Blob struct {
	KeyID  KeyID
	Sealed []byte // nonce | ciphertext | tag; aliases the parsed input
}

// Parse strictly parses b. Sealed aliases b.
func Parse(b []byte) (Blob, error) {
	switch {
	case len(b) == 0:
		return Blob{}, fmt.Errorf("%w: empty", ErrMalformed)
	case b[0] != Version1:
		return Blob{}, fmt.Errorf("%w: unknown version %d", ErrMalformed, b[0])
	case len(b) < MinSize:
		return Blob{}, fmt.Errorf("%w: too short", ErrMalformed)
	case len(b) > MaxSize:
		return Blob{}, fmt.Errorf("%w: too long", ErrMalformed)
	case b[1] != KeyIDSize:
		return Blob{}, fmt.Errorf("%w: bad key id length", ErrMalformed)
	}
	var bl Blob
	copy(bl.KeyID[:], b[2:headerSize])
	bl.Sealed = b[headerSize:]
	return bl, nil
}

// Marshal appends the encoded blob to dst.
func (bl Blob) Marshal(dst []byte) []byte {
	dst = append(dst, Version1, KeyIDSize)
	dst = append(dst, bl.KeyID[:]...)
	return append(dst, bl.Sealed...)
}

// AAD returns the associated data a blob's ciphertext is bound to: the
// format version, the key id, the subject and the caller's context, each
// length-prefixed. Decrypting with another subject or context fails.
func AAD(id KeyID, subject, context string) []byte {
	aad := make([]byte, 0, 32+KeyIDSize+len(subject)+len(context))
	aad = append(aad, "tokenvault/blob/v1"...)
	aad = append(aad, Version1)
	aad = append(aad, id[:]...)
	aad = appendString(aad, subject)
	return appendString(aad, context)
}

func appendString(b []byte, s string) []byte {
	n := len(s)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, s...)
}
