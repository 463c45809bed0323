package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
)

// Ed25519 key files: PEM, PKCS #8 for the private key and PKIX for the
// public key (openssl reads both). A private key file may start with "#"
// comment lines saying what the key is for.

const (
	privateKeyType = "PRIVATE KEY"
	publicKeyType  = "PUBLIC KEY"
)

// MarshalPrivateKey encodes priv as a PEM "PRIVATE KEY" block (PKCS #8).
func MarshalPrivateKey(priv ed25519.PrivateKey) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(priv) // cannot fail for Ed25519
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: privateKeyType, Bytes: der})
}

// ParsePrivateKey decodes an Ed25519 private key file: optional text before
// it (comments), exactly one PEM "PRIVATE KEY" block without headers, and
// nothing but white space after it. Errors never include key bytes.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != privateKeyType {
		return nil, errors.New("not an Ed25519 private key file: no PEM PRIVATE KEY block")
	}
	defer clear(blk.Bytes)
	if len(blk.Headers) > 0 {
		return nil, errors.New("not an Ed25519 private key file: PEM headers (an encrypted key?)")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("not an Ed25519 private key file: data after the PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("not an Ed25519 private key file: not a PKCS #8 key")
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("not an Ed25519 private key file: a key of another type")
	}
	return priv, nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" block (PKIX).
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub) // cannot fail for Ed25519
	return pem.EncodeToMemory(&pem.Block{Type: publicKeyType, Bytes: der})
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" block holding an Ed25519 key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != publicKeyType {
		return nil, errors.New("not a PEM PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("public key: not an Ed25519 key")
	}
	return pub, nil
}

// KeyID is the fingerprint of an Ed25519 public key, as receipts and audit
// checkpoints name their signing key: the first 8 bytes of its SHA-256, in
// hex.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// LoadSigningKey reads the Ed25519 private key file at path (through
// [ReadSecret]); a missing file is [ErrNotExist].
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	b, err := ReadSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, path)
	}
	if err != nil {
		return nil, err
	}
	defer clear(b)
	priv, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	return priv, nil
}

// CreateSigningKey makes a new Ed25519 key and writes it to path with
// [WriteExclusive], after comment, which says what the key is for (each of
// its lines is written as a "# " comment).
func CreateSigningKey(path, comment string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var content []byte
	for line := range bytes.Lines([]byte(comment)) {
		content = append(content, "# "...)
		content = append(content, bytes.TrimRight(line, "\n")...)
		content = append(content, '\n')
	}
	content = append(content, MarshalPrivateKey(priv)...)
	defer clear(content)
	if err := WriteExclusive(path, content); err != nil {
		return nil, err
	}
	return priv, nil
}

// LoadOrCreateSigningKey opens the receipt signing key at path, creating
// it if it is missing. A new receipt signing key loses nothing: receipts
// signed earlier still verify with the old public key.
func LoadOrCreateSigningKey(path string) (priv ed25519.PrivateKey, created bool, err error) {
	priv, err = LoadSigningKey(path)
	if !errors.Is(err, ErrNotExist) {
		return priv, false, err
	}
	priv, err = CreateSigningKey(path, "tokenvault erasure-receipt signing key (Ed25519). Keep it secret, like the keyring identity.\n"+
		"Its public key (tokenvault receipt pubkey) verifies receipts.")
	return priv, err == nil, err
}
