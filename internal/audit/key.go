package audit

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// The signing key is an Ed25519 private key in a PEM (PKCS #8) file, mode
// 0600, kept beside the KEK keyring; its public key is written next to it
// (".pub") for verifiers. The same key seeds the token-hash key (HKDF), so
// only holders of the signing key can link a token to audit entries.

// LoadOrCreateSigningKey reads the key at path, or creates it (and the
// public key file path+".pub") if path does not exist.
func LoadOrCreateSigningKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("audit signing key: %w", err)
		}
		if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("audit signing key: %w", err)
		}
		pub, _ := MarshalPublicKey(key.Public().(ed25519.PublicKey))
		if err := os.WriteFile(PublicKeyPath(path), pub, 0o644); err != nil {
			return nil, false, fmt.Errorf("audit public key: %w", err)
		}
		return key, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit signing key: %w", err)
	}
	key, err = ParseSigningKey(b)
	if err != nil {
		return nil, false, fmt.Errorf("audit signing key %s: %w", path, err)
	}
	return key, false, nil
}

// writeNew writes a new file durably; it fails if the file exists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ParseSigningKey parses a PEM PKCS #8 Ed25519 private key.
func ParseSigningKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("not an Ed25519 key")
	}
	return ek, nil
}

// MarshalPublicKey encodes pub as a PEM PUBLIC KEY (PKIX).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey parses a PEM PUBLIC KEY, or the private key file itself
// (its public half is used).
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if blk.Type == "PRIVATE KEY" {
		k, err := ParseSigningKey(b)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	if blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block is %q, not PUBLIC KEY", blk.Type)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an Ed25519 public key")
	}
	return pub, nil
}

// KeyID names a public key in checkpoints: hex of the first 8 bytes of
// its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// TokenHasher computes the keyed hashes that stand for tokens in the log.
type TokenHasher struct {
	key []byte
	// HMAC states under key, reused: one per audited token otherwise
	// allocates two SHA-256 states and the padded keys.
	macs sync.Pool
}

// NewTokenHasher derives the token-hash key from the signing key.
func NewTokenHasher(key ed25519.PrivateKey) (*TokenHasher, error) {
	k, err := hkdf.Key(sha256.New, key.Seed(), nil, "tokenvault audit token hash v1", 32)
	if err != nil {
		return nil, err
	}
	return &TokenHasher{key: k}, nil
}

// Hash returns the first 128 bits of HMAC-SHA256(key, token) in hex.
// A token is a bearer reference to a value, so the log must not hold it;
// a keyed hash (not a plain one) because token spaces can be small
// enough to enumerate.
func (h *TokenHasher) Hash(token string) string {
	m, ok := h.macs.Get().(hash.Hash)
	if !ok {
		m = hmac.New(sha256.New, h.key)
	}
	m.Reset()
	m.Write([]byte(token))
	var sum [sha256.Size]byte
	out := m.Sum(sum[:0])
	h.macs.Put(m)
	return hex.EncodeToString(out[:16])
}

// PublicKeyPath is where LoadOrCreateSigningKey writes the public key.
func PublicKeyPath(signingKey string) string { return signingKey + ".pub" }
