package badgerstore_test

import (
	"path/filepath"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/backup/backuptest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

var _ backup.Loader = (*badgerstore.Loader)(nil)

func TestBackupSuite(t *testing.T) {
	backuptest.Run(t, backuptest.Store{
		Open: func(t *testing.T, dir string, ledgerKey *aead.Key) vault.Store {
			s, err := badgerstore.Open(dir, badgerstore.Options{IDKey: ledgerKey}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Loader:    backup.OpenerOf(badgerstore.NewLoader),
		NewTarget: func(t *testing.T) string { return filepath.Join(t.TempDir(), "data") },
	})
}
