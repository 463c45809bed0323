package keyfile_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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

// TestPrivateKeyFormats: the files the current and earlier versions write
// parse (the receipt key with its comment header, the audit key as bare
// PEM, as openssl writes it too); ambiguous or foreign files do not.
func TestPrivateKeyFormats(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	bare := keyfile.MarshalPrivateKey(priv)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	withHeaders := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: der})
	for name, c := range map[string]struct {
		file []byte
		ok   bool
	}{
		"bare PEM (audit key)":      {bare, true},
		"comment header (receipt)":  {append([]byte("# tokenvault erasure-receipt signing key (Ed25519).\n# Its public key…\n"), bare...), true},
		"trailing newlines":         {append(bytes.Clone(bare), "\n\n"...), true},
		"two keys":                  {append(bytes.Clone(bare), bare...), false},
		"data after the key":        {append(bytes.Clone(bare), "x"...), false},
		"PEM headers":               {withHeaders, false},
		"public key":                {keyfile.MarshalPublicKey(pub), false},
		"empty":                     {nil, false},
		"PRIVATE KEY, not PKCS #8":  {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), false},
		"public key before the key": {append(keyfile.MarshalPublicKey(pub), bare...), false},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := keyfile.ParsePrivateKey(c.file)
			if c.ok && (err != nil || !k.Equal(priv)) {
				t.Fatalf("refused or wrong key: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("accepted")
			}
			if err != nil && strings.Contains(err.Error(), hex.EncodeToString(priv.Seed()[:4])) {
				t.Fatal("error text holds key bytes")
			}
		})
	}
	p2, err := keyfile.ParsePublicKey(keyfile.MarshalPublicKey(pub))
	if err != nil || !p2.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := keyfile.ParsePublicKey(bare); err == nil {
		t.Fatal("a private key parsed as a public key")
	}
	if got := keyfile.KeyID(pub); len(got) != 16 {
		t.Fatalf("KeyID %q: want 16 hex digits", got)
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
		"two keys":  "tokenvault-ledger-key-v1:" + strings.Repeat("ab", 32) + "\ntokenvault-ledger-key-v1:" + strings.Repeat("cd", 32) + "\n",
		"not hex":   "tokenvault-ledger-key-v1:" + strings.Repeat("zz", 32) + "\n",
		"no prefix": strings.Repeat("ab", 32) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			os.WriteFile(p, []byte(content), 0o600)
			_, err := keyfile.LoadLedgerKey(p)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "abab") || strings.Contains(err.Error(), "cdcd") {
				t.Fatalf("error text holds key digits: %v", err)
			}
		})
	}
}

// TestSecretFilePermissions: every loader of a secret file refuses one
// that group or others may read or write, names the file and says how to
// fix it, and never shows key bytes.
func TestSecretFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no permission bits on Windows")
	}
	dir := t.TempDir()
	ledger := filepath.Join(dir, "ledger.key")
	if _, _, err := keyfile.LoadOrCreateLedgerKey(ledger, true); err != nil {
		t.Fatal(err)
	}
	signing := filepath.Join(dir, "signing.pem")
	priv, _, err := keyfile.LoadOrCreateSigningKey(signing)
	if err != nil {
		t.Fatal(err)
	}
	loaders := map[string]struct {
		path string
		load func() error
	}{
		"ledger key":  {ledger, func() error { _, err := keyfile.LoadLedgerKey(ledger); return err }},
		"signing key": {signing, func() error { _, _, err := keyfile.LoadOrCreateSigningKey(signing); return err }},
		"ReadSecret":  {ledger, func() error { _, err := keyfile.ReadSecret(ledger); return err }},
	}
	for _, mode := range []fs.FileMode{0o600, 0o400, 0o640, 0o644, 0o660, 0o604, 0o620, 0o602, 0o610, 0o700} {
		for name, l := range loaders {
			t.Run(name+"/"+mode.String(), func(t *testing.T) {
				if err := os.Chmod(l.path, mode); err != nil {
					t.Fatal(err)
				}
				defer os.Chmod(l.path, 0o600)
				err := l.load()
				if mode&0o077 == 0 {
					if err != nil {
						t.Fatalf("owner-only file refused: %v", err)
					}
					return
				}
				if !errors.Is(err, keyfile.ErrPermissions) {
					t.Fatalf("mode %v accepted or wrong error: %v", mode, err)
				}
				msg := err.Error()
				if !strings.Contains(msg, l.path) || !strings.Contains(msg, "chmod 600") {
					t.Fatalf("error does not name the file and the fix: %v", err)
				}
				if strings.Contains(msg, hex.EncodeToString(priv.Seed()[:4])) {
					t.Fatal("error text holds key bytes")
				}
			})
		}
	}
	// The check follows a symlink to the file it guards.
	link := filepath.Join(dir, "link.key")
	os.Symlink(ledger, link)
	os.Chmod(ledger, 0o644)
	if _, err := keyfile.LoadLedgerKey(link); !errors.Is(err, keyfile.ErrPermissions) {
		t.Fatalf("loose file behind a symlink: %v", err)
	}
	if _, err := keyfile.ReadSecret(dir); err == nil {
		t.Fatal("a directory was read as a secret file")
	}
}

// TestWriters: exclusive writes never replace, Replace does, modes are
// 0600 (0644 for public files) in a 0700 directory, and no temporary
// file is left behind.
func TestWriters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "a.key")
	if err := keyfile.WriteExclusive(path, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.WriteExclusive(path, []byte("two")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrote an existing file, or wrong error: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("content %q after a refused write", b)
	}
	if err := keyfile.Replace(path, []byte("three")); err != nil {
		t.Fatal(err)
	}
	if b, _ := keyfile.ReadSecret(path); string(b) != "three" {
		t.Fatalf("content %q after Replace", b)
	}
	pub := filepath.Join(dir, "a.pub")
	if err := keyfile.WritePublic(pub, []byte("public")); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.WritePublic(pub, []byte("other")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrote a public key file: %v", err)
	}
	if runtime.GOOS != "windows" {
		for p, want := range map[string]fs.FileMode{dir: 0o700, path: 0o600, pub: 0o644} {
			if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v (%v)", p, st.Mode().Perm(), want, err)
			}
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only a.key and a.pub", names)
	}
}

// TestSecretFileOwner: a secret file owned by another (non-root) user is
// refused even with mode 0600: that user could replace the key. Needs
// root to give a file away (CI runs as root).
func TestSecretFileOwner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no owner ids on Windows")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user; run as root (CI does)")
	}
	ledger := filepath.Join(t.TempDir(), "ledger.key")
	if _, _, err := keyfile.LoadOrCreateLedgerKey(ledger, true); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ledger, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	_, err := keyfile.LoadLedgerKey(ledger)
	if !errors.Is(err, keyfile.ErrPermissions) || !strings.Contains(err.Error(), "owned by user 12345") {
		t.Fatalf("file owned by another user: %v", err)
	}
	if err := os.Chown(ledger, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.LoadLedgerKey(ledger); err != nil {
		t.Fatalf("root-owned 0600 file: %v", err)
	}
}
