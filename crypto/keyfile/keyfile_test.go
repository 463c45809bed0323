package keyfile_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/keyfile"
)

func TestSigningKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "receipt-signing.pem")
	k1, created, err := keyfile.LoadOrCreateSigningKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v, %v", created, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := keyfile.LoadOrCreateSigningKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("reopen: created=%v err=%v same=%v", created, err, k1.Equal(k2))
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, _, err := keyfile.LoadOrCreateSigningKey(path); err == nil {
		t.Fatal("a damaged signing key file was accepted")
	}
}

func TestLedgerKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.key")
	if _, _, err := keyfile.LoadOrCreateLedgerKey(path, false); !errors.Is(err, keyfile.ErrNotExist) {
		t.Fatalf("missing key with mayCreate=false: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a key file was created although mayCreate was false")
	}
	k1, created, err := keyfile.LoadOrCreateLedgerKey(path, true)
	if err != nil || !created {
		t.Fatal(err)
	}
	k2, err := keyfile.LoadLedgerKey(path)
	if err != nil || !bytes.Equal(k1.Bytes(), k2.Bytes()) {
		t.Fatalf("reload: %v", err)
	}
	for name, content := range map[string]string{
		"empty":     "",
		"short key": "tokenvault-ledger-key-v1:abcd\n",
		"two keys":  "tokenvault-ledger-key-v1:" + string(bytes.Repeat([]byte("ab"), 32)) + "\ntokenvault-ledger-key-v1:" + string(bytes.Repeat([]byte("cd"), 32)) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			os.WriteFile(p, []byte(content), 0o600)
			if _, err := keyfile.LoadLedgerKey(p); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
