package backup_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// TestRestoreBadFrame: a backup that is signed and decrypts, but whose
// frame the store cannot decode (a bug, or a signing key in the wrong
// hands), is refused naming the file and what is wrong, and leaves
// nothing behind.
func TestRestoreBadFrame(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	_, signing, _ := ed25519.GenerateKey(nil)
	lk, _ := aead.NewKey()
	kid, err := vault.LedgerKeyID(lk)
	if err != nil {
		t.Fatal(err)
	}
	ledger := backup.Ledger{KeyID: kid}
	if ledger.MAC, err = ledger.Sum(lk); err != nil {
		t.Fatal(err)
	}
	junk := []byte("not a frame of entries")
	payload := []byte("tokenvault-backup-payload/v1\n")
	payload = binary.BigEndian.AppendUint64(payload, 0)
	payload = binary.LittleEndian.AppendUint64(payload, uint64(len(junk)))
	payload = append(payload, junk...)
	payload = binary.LittleEndian.AppendUint64(payload, ^uint64(0))
	payload = binary.BigEndian.AppendUint64(payload, 0)
	payload = binary.BigEndian.AppendUint64(payload, 5)
	var ct bytes.Buffer
	enc, err := backup.Encrypt(&ct, []age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(payload)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	signed := func(name string, ct []byte) string {
		digest := sha256.Sum256(ct)
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, append(backup.SignBackup(signing, 0, 5, digest[:]).Marshal(), ct...), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	for name, tc := range map[string]struct {
		file string
		want error  // errors.Is
		says string // and the message after the file name
	}{
		// The store's own error, named as such.
		"frame": {signed("junk.tvbak", ct.Bytes()), badgerstore.ErrBadFrame, "backup payload is truncated or corrupt: frame does not parse"},
		// The age reader's, wherever it surfaced.
		"truncated ciphertext": {signed("cut.tvbak", ct.Bytes()[:ct.Len()-20]), nil, "is corrupted or truncated"},
	} {
		t.Run(name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "restored")
			_, err := backup.Restore(context.Background(), backup.RestoreOptions{DataDir: target, Open: backup.OpenerOf(badgerstore.NewLoader),
				Files: []string{tc.file}, Identities: []age.Identity{id}, LedgerKey: lk, Ledger: ledger,
				VerifyKey: signing.Public().(ed25519.PublicKey)})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.HasPrefix(err.Error(), tc.file) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Restore = %v, want %q after the file name", err, tc.says)
			}
			if left, _ := os.ReadDir(filepath.Dir(target)); len(left) != 0 {
				t.Fatalf("the failed restore left %v behind", left)
			}
		})
	}
}
