package pgstore_test

import (
	"context"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/internal/backup/backuptest"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/pgstore"
)

var (
	_ backup.Loader = (*pgstore.Loader)(nil)
	_ backup.Source = (*pgstore.Store)(nil)
)

// The shared backup→restore suite: PostgreSQL to PostgreSQL, targets
// being fresh migrated databases.
func TestBackupSuite(t *testing.T) {
	backuptest.Run(t, backuptest.Store{
		Open: func(t *testing.T, dsn string, ledgerKey *aead.Key) vault.Store {
			s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{IDKey: ledgerKey})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Loader: backup.OpenerOf(pgstore.NewLoader),
		NewTarget: func(t *testing.T) string {
			db := pgtest.New(t)
			if _, _, err := pgstore.Migrate(context.Background(), db.DSN); err != nil {
				t.Fatal(err)
			}
			return db.DSN
		},
		FullOnly: true,
	})
}
