// Package keyfile keeps the vault's two small secret key files beside the
// keyring, protected like the keyring identity (mode 0600 in a 0700
// directory, created exclusively, synced, never overwritten):
//
//   - the receipt signing key (Ed25519, PEM PKCS #8), which signs erasure
//     receipts; its public half is exportable;
//   - the erasure-ledger key (256 bits), which keys the ledger's hashes of
//     erased subject ids. A restore needs it to recognise erased subjects.
//
// Error texts never contain key bytes.
package keyfile

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// ErrNotExist: the key file is missing and may not be created.
var ErrNotExist = errors.New("keyfile: key file does not exist")

const ledgerPrefix = "tokenvault-ledger-key-v1:"

// LoadOrCreateSigningKey opens the receipt signing key at path, creating
// it if it is missing. A new signing key loses nothing: receipts signed
// earlier still verify with the old public key.
func LoadOrCreateSigningKey(path string) (priv ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		priv, err := receipt.ParsePrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("keyfile: %s: %w", path, err)
		}
		return priv, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("keyfile: %w", err)
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	content := append([]byte("# tokenvault erasure-receipt signing key (Ed25519). Keep it secret, like the keyring identity.\n"+
		"# Its public key (tokenvault receipt pubkey) verifies receipts.\n"), receipt.MarshalPrivateKey(priv)...)
	if err := WriteExclusive(path, content); err != nil {
		return nil, false, err
	}
	return priv, true, nil
}

// LoadOrCreateLedgerKey opens the ledger key at path. A missing key is
// created only when mayCreate is true: the caller passes false when the
// store already holds ledger entries, which a new key could never match,
// so a lost key is reported instead of silently replaced.
func LoadOrCreateLedgerKey(path string, mayCreate bool) (k *aead.Key, created bool, err error) {
	k, err = LoadLedgerKey(path)
	if !errors.Is(err, ErrNotExist) {
		return k, false, err
	}
	if !mayCreate {
		return nil, false, fmt.Errorf("%w: %s (the store holds erasure-ledger entries made with it; restore the file from the keys backup)", ErrNotExist, path)
	}
	if k, err = aead.NewKey(); err != nil {
		return nil, false, err
	}
	content := "# tokenvault erasure-ledger key: hashes erased subject ids. Keep it secret, with the keyring\n" +
		"# identity; `tokenvault restore` needs it to keep erased subjects erased.\n" +
		ledgerPrefix + hex.EncodeToString(k.Bytes()) + "\n"
	if err := WriteExclusive(path, []byte(content)); err != nil {
		k.Zero()
		return nil, false, err
	}
	return k, true, nil
}

// LoadLedgerKey opens an existing ledger key file (ErrNotExist if there is
// none).
func LoadLedgerKey(path string) (*aead.Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, path)
	}
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer clear(b)
	sc := bufio.NewScanner(bytes.NewReader(b))
	var key *aead.Key
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		h, ok := strings.CutPrefix(line, ledgerPrefix)
		raw, err := hex.DecodeString(h)
		if !ok || err != nil || key != nil {
			clear(raw)
			return nil, fmt.Errorf("keyfile: %s: not a tokenvault ledger key file", path)
		}
		key, err = aead.KeyFromBytes(raw)
		clear(raw)
		if err != nil {
			return nil, fmt.Errorf("keyfile: %s: not a tokenvault ledger key file", path)
		}
	}
	if key == nil {
		return nil, fmt.Errorf("keyfile: %s: not a tokenvault ledger key file", path)
	}
	return key, nil
}

// WriteExclusive creates path (mode 0600, directory 0700) with content,
// refusing to overwrite an existing file, and syncs it; on failure nothing
// is left behind. Every secret or evidence file tokenvault creates goes
// through it: a new key must never silently replace an old one.
func WriteExclusive(path string, content []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keyfile: creating %s: %w", path, err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("keyfile: writing %s: %w", path, err)
	}
	return nil
}
