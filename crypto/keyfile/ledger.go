package keyfile

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// The ledger key file: "#" comment lines and blank lines, and exactly one
// line "tokenvault-ledger-key-v1:" followed by the key in hex.
const ledgerPrefix = "tokenvault-ledger-key-v1:"

const ledgerComment = "# tokenvault erasure-ledger key: hashes erased subject ids. Keep it secret, with the keyring\n" +
	"# identity; `tokenvault restore` needs it to keep erased subjects erased.\n"

// errNotLedgerKey never says more: the line at fault may hold key digits.
var errNotLedgerKey = errors.New("not a tokenvault ledger key file")

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
	content := MarshalLedgerKey(k)
	defer clear(content)
	if err := WriteExclusive(path, content); err != nil {
		k.Zero()
		return nil, false, err
	}
	return k, true, nil
}

// LoadLedgerKey opens an existing ledger key file (through [ReadSecret];
// [ErrNotExist] if there is none).
func LoadLedgerKey(path string) (*aead.Key, error) {
	b, err := ReadSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, path)
	}
	if err != nil {
		return nil, err
	}
	defer clear(b)
	k, err := ParseLedgerKey(b)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	return k, nil
}

// MarshalLedgerKey encodes k as a ledger key file.
func MarshalLedgerKey(k *aead.Key) []byte {
	b := make([]byte, 0, len(ledgerComment)+len(ledgerPrefix)+hex.EncodedLen(len(k.Bytes()))+1)
	b = append(b, ledgerComment...)
	b = append(b, ledgerPrefix...)
	b = hex.AppendEncode(b, k.Bytes())
	return append(b, '\n')
}

// ParseLedgerKey decodes a ledger key file.
func ParseLedgerKey(b []byte) (*aead.Key, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var key *aead.Key
	fail := func() (*aead.Key, error) {
		if key != nil {
			key.Zero()
		}
		return nil, errNotLedgerKey
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		h, ok := strings.CutPrefix(line, ledgerPrefix)
		if !ok || key != nil {
			return fail()
		}
		raw, err := hex.DecodeString(h)
		if err != nil {
			clear(raw)
			return fail()
		}
		key, err = aead.KeyFromBytes(raw)
		clear(raw)
		if err != nil {
			return fail()
		}
	}
	if sc.Err() != nil || key == nil {
		return fail()
	}
	return key, nil
}
