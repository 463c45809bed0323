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
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
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
	mac  *macState // likewise shared, and wiped by Zero
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
	k := &Key{b: new([KeySize]byte), mac: new(macState)}
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
	k.mac.zero()
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
	inner, outer, err := k.mac.states(k.b)
	if err != nil {
		return nil, err
	}
	sc := scratches.Get().(*macScratch)
	// Back to the pool reset: a digest then holds no key material (a
	// midstate is as good as the key for computing MACs).
	defer func() { sc.d.Reset(); clear(sc.sum[:]); scratches.Put(sc) }()
	d := sc.d
	if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(inner); err != nil {
		return nil, fmt.Errorf("aead: mac: %w", err)
	}
	for _, p := range parts {
		sc.l[0], sc.l[1], sc.l[2], sc.l[3] = byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
		d.Write(sc.l[:])
		// Through the scratch buffer: a part handed to the hash.Hash
		// interface would escape, and with it every caller's
		// []byte(string) conversion (two allocations for a subject's
		// store hash).
		for len(p) > 0 {
			n := copy(sc.in[:], p)
			d.Write(sc.in[:n])
			p = p[n:]
		}
	}
	clear(sc.in[:])
	d.Sum(sc.sum[:0])
	if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(outer); err != nil {
		return nil, fmt.Errorf("aead: mac: %w", err)
	}
	d.Write(sc.sum[:])
	return d.Sum(make([]byte, 0, sha256.Size)), nil
}

// macScratch is what one MAC needs besides its result: a digest and the
// buffers passed to it (on the stack they would escape through the
// hash.Hash interface, two allocations a call).
type macScratch struct {
	d   hash.Hash
	l   [4]byte
	in  [sha256.BlockSize]byte
	sum [sha256.Size]byte
}

// scratches hold reset digests and cleared sums (no key material: see
// Key.MAC).
var scratches = sync.Pool{New: func() any { return &macScratch{d: sha256.New()} }}

// macState holds a key's HMAC-SHA256 midstates: SHA-256 after the key
// xor ipad and after the key xor opad, as marshaled digests. hmac.New
// recomputes both for every MAC (two compressions and seven allocations,
// on every tokenize call for the subject's store hash); with them, a MAC
// costs the message and one allocation, the result. They are key material
// (they compute any MAC under the key), so they live with the key and
// Zero wipes them; unlike a pool of hmac states, nothing holds them that
// Zero cannot reach.
type macState struct {
	once         sync.Once
	inner, outer []byte
	err          error
}

// states computes the midstates on first use (most keys never MAC).
func (m *macState) states(key *[KeySize]byte) (inner, outer []byte, err error) {
	m.once.Do(func() {
		var pad [sha256.BlockSize]byte
		defer clear(pad[:])
		for i, x := range [2]byte{0x36, 0x5c} { // RFC 2104's ipad, opad
			copy(pad[:], key[:]) // a 32-byte key is used as it is, zero-padded to the block
			clear(pad[KeySize:])
			for j := range pad {
				pad[j] ^= x
			}
			d := sha256.New()
			d.Write(pad[:])
			st, err := d.(encoding.BinaryMarshaler).MarshalBinary()
			d.Reset()
			if err != nil {
				m.err = fmt.Errorf("aead: mac: %w", err)
				return
			}
			if i == 0 {
				m.inner = st
			} else {
				m.outer = st
			}
		}
	})
	if m.err == nil && (m.inner == nil || m.outer == nil) {
		return nil, nil, errors.New("aead: key has been zeroed")
	}
	return m.inner, m.outer, m.err
}

// zero wipes the midstates. A MAC through a copy of the key made before
// Zero then fails instead of computing under wiped state.
func (m *macState) zero() {
	m.once.Do(func() {}) // none computed from here on
	clear(m.inner)       // cleared, a state no longer unmarshals
	clear(m.outer)
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
