// Package aead holds tokenvault's symmetric key type and its AES-256-GCM
// sealing.
//
// A [Key] is the only place key bytes live. It has no String method and
// formats as "[REDACTED]" under every fmt verb, so a key that slips into a
// log line or an error message prints nothing useful. Key bytes leave the
// type only through the explicit [Key.Bytes] accessor (used to wrap a key
// under the KEK), and [Key.Zero] wipes them when a key is dropped.
//
// Nonces are random (96 bits). With per-subject keys a single key seals far
// fewer than the 2^32 messages after which random GCM nonces become risky.
package aead

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

const (
	// KeySize is the size of every key: AES-256.
	KeySize = 32
	// NonceSize is the GCM nonce size.
	NonceSize = 12
	// Overhead is what Seal adds to a plaintext: nonce and tag.
	Overhead = NonceSize + 16
)

// ErrDecrypt means a sealed message failed authentication: wrong key,
// wrong associated data, or tampering. It deliberately says no more.
var ErrDecrypt = errors.New("aead: message authentication failed")

// Key is a 256-bit secret key. The zero value is not usable; make keys
// with [NewKey] or [KeyFromBytes].
type Key struct {
	b    *[KeySize]byte // a pointer, so that copies of Key share one buffer to zero
	aead cipher.AEAD
}

// NewKey returns a fresh random key.
func NewKey() (*Key, error) {
	var b [KeySize]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return nil, fmt.Errorf("aead: generating key: %w", err)
	}
	k, err := KeyFromBytes(b[:])
	clear(b[:])
	return k, err
}

// KeyFromBytes copies b into a new key. The caller should zero b.
func KeyFromBytes(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("aead: key must be %d bytes, got %d", KeySize, len(b))
	}
	k := &Key{b: new([KeySize]byte)}
	copy(k.b[:], b)
	block, err := aes.NewCipher(k.b[:])
	if err != nil {
		return nil, fmt.Errorf("aead: %w", err)
	}
	// The expanded AES key schedule inside crypto/aes cannot be wiped from
	// here; it becomes garbage together with the Key.
	k.aead, err = cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("aead: %w", err)
	}
	return k, nil
}

// Bytes returns the key bytes. Use it only to hand the key to a KEK for
// wrapping; the returned slice aliases the key and is wiped by Zero.
func (k *Key) Bytes() []byte { return k.b[:] }

// Zero wipes the key bytes and makes the key unusable.
func (k *Key) Zero() {
	if k == nil || k.b == nil {
		return
	}
	clear(k.b[:])
	k.aead = nil
}

// Format redacts the key under every verb (%v, %s, %x, %#v, ...).
func (k *Key) Format(f fmt.State, _ rune) { io.WriteString(f, "[REDACTED]") }

// Seal encrypts and authenticates plaintext and aad, appending
// nonce||ciphertext||tag to dst.
func (k *Key) Seal(dst, plaintext, aad []byte) ([]byte, error) {
	if k.aead == nil {
		return nil, errors.New("aead: key has been zeroed")
	}
	ret, out := sliceForAppend(dst, NonceSize+len(plaintext)+k.aead.Overhead())
	nonce := out[:NonceSize]
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("aead: nonce: %w", err)
	}
	k.aead.Seal(out[NonceSize:NonceSize], nonce, plaintext, aad)
	return ret, nil
}

// Open authenticates and decrypts a message made by Seal, appending the
// plaintext to dst. Any failure is ErrDecrypt.
func (k *Key) Open(dst, sealed, aad []byte) ([]byte, error) {
	if k.aead == nil {
		return nil, errors.New("aead: key has been zeroed")
	}
	if len(sealed) < Overhead {
		return nil, ErrDecrypt
	}
	out, err := k.aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}

// Derive returns a subkey for one purpose, named by label (HKDF-SHA256).
// Subkeys let one stored data key serve several uses (sealing records,
// keying deterministic lookups) without reusing key bytes across them.
func (k *Key) Derive(label string) (*Key, error) {
	if k.aead == nil {
		return nil, errors.New("aead: key has been zeroed")
	}
	b, err := hkdf.Key(sha256.New, k.b[:], nil, label, KeySize)
	if err != nil {
		return nil, fmt.Errorf("aead: derive: %w", err)
	}
	defer clear(b)
	return KeyFromBytes(b)
}

// MAC returns HMAC-SHA256 over the length-prefixed parts, so that
// ("ab","c") and ("a","bc") never collide.
func (k *Key) MAC(parts ...[]byte) ([]byte, error) {
	if k.aead == nil {
		return nil, errors.New("aead: key has been zeroed")
	}
	m := hmac.New(sha256.New, k.b[:])
	var l [4]byte
	for _, p := range parts {
		l[0], l[1], l[2], l[3] = byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
		m.Write(l[:])
		m.Write(p)
	}
	return m.Sum(nil), nil
}

func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
