package backup_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/backup"
	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/badgerstore"
)

// newVault is a vault over an in-memory badger store, and the store.
func newVault(t *testing.T) (*vault.Vault, backup.Source) {
	t.Helper()
	st, err := badgerstore.Open("", badgerstore.Options{InMemory: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir := t.TempDir()
	kr, _, err := agekeyring.OpenOrCreate(agekeyring.Config{Path: filepath.Join(dir, "k.age"), IdentityFile: filepath.Join(dir, "id")}, true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(context.Background(), st, kr, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v, st
}

// TestServiceRefuses: what the service refuses, it refuses before it
// sends anything, with an error the gRPC layer maps (a vault sentinel, a
// field error naming the request field, errors.ErrUnsupported).
func TestServiceRefuses(t *testing.T) {
	v, src := newVault(t)
	_, signing, _ := ed25519.GenerateKey(nil)
	id, _ := age.GenerateX25519Identity()
	good := []string{id.Recipient().String()}
	for name, tc := range map[string]struct {
		svc        *backup.Service
		recipients []string
		want       error
		field      string
	}{
		"no source":        {backup.NewService(nil, v, backup.Keys{Signing: signing}), good, errors.ErrUnsupported, ""},
		"no signing key":   {backup.NewService(src, v, backup.Keys{}), good, vault.ErrNotConfigured, ""},
		"no recipient":     {backup.NewService(src, v, backup.Keys{Signing: signing}), nil, vault.ErrInvalidArgument, "recipients"},
		"bad recipient":    {backup.NewService(src, v, backup.Keys{Signing: signing}), append(good, "age1nope"), vault.ErrInvalidArgument, "recipients[1]"},
		"comment injected": {backup.NewService(src, v, backup.Keys{Signing: signing}), []string{good[0] + "\n# x"}, vault.ErrInvalidArgument, "recipients[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := tc.svc.Backup(context.Background(), tc.recipients, 0, func([]byte, int64, int64) error {
				t.Fatal("sent a chunk")
				return nil
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Backup = %v, want %v", err, tc.want)
			}
			var fe *vault.FieldError
			if tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
				t.Fatalf("Backup = %v, want a field error naming %s", err, tc.field)
			}
		})
	}
	_, _, err := backup.NewService(src, v, backup.Keys{Signing: signing}).ExportLedger(context.Background(),
		func(string, []vault.LedgerEntry) error { t.Fatal("sent a page"); return nil })
	if !errors.Is(err, vault.ErrNotConfigured) {
		t.Fatalf("ExportLedger without a ledger key = %v", err)
	}
}

// TestServiceCanceled: a backup whose caller went away reports the
// cancellation, not the failed send.
func TestServiceCanceled(t *testing.T) {
	v, src := newVault(t)
	_, signing, _ := ed25519.GenerateKey(nil)
	id, _ := age.GenerateX25519Identity()
	ctx, cancel := context.WithCancel(context.Background())
	_, _, _, err := backup.NewService(src, v, backup.Keys{Signing: signing}).Backup(ctx, []string{id.Recipient().String()}, 0,
		func([]byte, int64, int64) error {
			cancel()
			return errors.New("stream closed")
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Backup = %v, want context.Canceled", err)
	}
}
