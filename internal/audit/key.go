package audit

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
)

// The signing key is an Ed25519 private key in a PEM (PKCS #8) file, mode
// 0600, kept beside the KEK keyring; its public key is written next to it
// (".pub") for verifiers. The same key seeds the token-hash key (HKDF), so
// only holders of the signing key can link a token to audit entries. Both
// files are kept by crypto/keyfile, the one home of key files.

// LoadOrCreateSigningKey reads the key at path. A missing key is created
// (with its public key file path+".pub") only when mayCreate is true: the
// caller passes false when the audit log already holds entries, because a new key
// would hide the log's history: its checkpoints would no longer verify
// against the key the server then publishes, and nothing would tell a
// deleted key from a log that was never signed. That refusal wraps
// [keyfile.ErrNotExist].
func LoadOrCreateSigningKey(path string, mayCreate bool) (key ed25519.PrivateKey, created bool, err error) {
	key, err = keyfile.LoadSigningKey(path)
	switch {
	case err == nil:
		return key, false, nil
	case !errors.Is(err, keyfile.ErrNotExist):
		return nil, false, fmt.Errorf("audit signing key: %w", err)
	case !mayCreate:
		return nil, false, fmt.Errorf("audit signing key: %w (the audit log holds entries, and a new key would hide their history: restore the key from the keys backup, or move the log away to start a new chain)", err)
	}
	// A public key file without its private key belongs to an earlier
	// key: refuse rather than overwrite what verifiers of old logs use.
	pubPath := PublicKeyPath(path)
	if _, err := os.Lstat(pubPath); !errors.Is(err, fs.ErrNotExist) {
		if err != nil {
			return nil, false, fmt.Errorf("audit public key: %w", err)
		}
		return nil, false, fmt.Errorf("audit signing key %s does not exist but its public key file %s does (it belongs to an earlier key): restore the key, or move the public key file away", path, pubPath)
	}
	key, err = keyfile.CreateSigningKey(path, "tokenvault audit signing key (Ed25519): signs the audit log's checkpoints and keys its token hashes.\n"+
		"Keep it secret and back it up with the keyring; verifiers use "+filepath.Base(pubPath)+".")
	if err != nil {
		return nil, false, fmt.Errorf("audit signing key: %w", err)
	}
	if err := keyfile.WritePublic(pubPath, keyfile.MarshalPublicKey(key.Public().(ed25519.PublicKey))); err != nil {
		// Nothing was signed with the new key yet: take it back, so the
		// next start creates both files again.
		os.Remove(path)
		return nil, false, fmt.Errorf("audit public key: %w", err)
	}
	return key, true, nil
}

// ParseSigningKey parses a PEM PKCS #8 Ed25519 private key.
func ParseSigningKey(b []byte) (ed25519.PrivateKey, error) { return keyfile.ParsePrivateKey(b) }

// ParsePublicKey parses a PEM PUBLIC KEY, or the private key file itself
// (its public half is used).
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == "PRIVATE KEY" {
		k, err := keyfile.ParsePrivateKey(b)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	return keyfile.ParsePublicKey(b)
}

// KeyID names a public key in checkpoints: hex of the first 8 bytes of
// its SHA-256.
func KeyID(pub ed25519.PublicKey) string { return keyfile.KeyID(pub) }

// TokenHasher computes the keyed hashes that stand for tokens in the log.
type TokenHasher struct {
	key []byte
	// HMAC states under key (*tokenMAC), reused: one per audited token
	// otherwise allocates two SHA-256 states and the padded keys.
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
	t, ok := h.macs.Get().(*tokenMAC)
	if !ok {
		t = &tokenMAC{m: hmac.New(sha256.New, h.key)}
	}
	t.m.Reset()
	// Through buffers of the pooled state: what is passed to the
	// hash.Hash interface escapes, two allocations a token otherwise.
	t.in = append(t.in[:0], token...)
	t.m.Write(t.in)
	t.m.Sum(t.sum[:0])
	var x [32]byte
	hex.Encode(x[:], t.sum[:16]) // one allocation (the string), not EncodeToString's two
	clear(t.in)
	if cap(t.in) > 1024 { // a refused call's oversized "token": not kept
		t.in = nil
	}
	h.macs.Put(t)
	return string(x[:])
}

// tokenMAC is a pooled HMAC state of a TokenHasher with its buffers.
type tokenMAC struct {
	m   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// PublicKeyPath is where LoadOrCreateSigningKey writes the public key.
func PublicKeyPath(signingKey string) string { return signingKey + ".pub" }
