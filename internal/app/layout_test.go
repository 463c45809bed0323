package app_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/testfs"
)

// TestStartMigratesLayout1: a data directory of store layout 1 (subject
// ids in the clear, vault/badgerstore/testdata/layout-1) is migrated when
// the server starts with its ledger key, and holds no subject id after;
// without the ledger key file the server refuses to start (a new key
// would find no subject) and makes no new key.
func TestStartMigratesLayout1(t *testing.T) {
	dir := testfs.CopyTree(t, filepath.Join("..", "..", "vault", "badgerstore", "testdata", "layout-1"))
	ids := []string{"zz-live-subject-3c9a", "zz-restricted-subject-51b0", "zz-erased-subject-7d1f"}
	holding := func() []string {
		var hits []string
		filepath.WalkDir(filepath.Join(dir, "data"), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, _ := os.ReadFile(path)
			for _, id := range ids {
				if bytes.Contains(b, []byte(id)) {
					hits = append(hits, filepath.Base(path)+": "+id)
				}
			}
			return nil
		})
		return hits
	}
	if len(holding()) == 0 {
		t.Fatal("the fixture holds no subject id: the test checks nothing")
	}
	cfg := dirConfig(dir)
	a, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if hits := holding(); len(hits) != 0 {
		t.Fatalf("after the start: %v", hits)
	}
	ledgerKey := filepath.Join(dir, "ledger.key")
	if err := os.Remove(ledgerKey); err != nil {
		t.Fatal(err)
	}
	a, err = app.Start(context.Background(), cfg)
	if err == nil {
		a.Stop()
		t.Fatal("started without the ledger key")
	}
	if !strings.Contains(err.Error(), "ledger.key") {
		t.Errorf("the error does not name the key file: %v", err)
	}
	if _, err := os.Stat(ledgerKey); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a new ledger key was made: %v", err)
	}
}

// TestStartRefusesNewLedgerKeyOverHashedIDs: a store of layout 2 holds
// subject ids hashed with the ledger key even before any erasure (when
// it holds no ledger entries): a lost key file is refused, not replaced.
func TestStartRefusesNewLedgerKeyOverHashedIDs(t *testing.T) {
	dir := t.TempDir()
	cfg := dirConfig(dir)
	a, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "ledger.key")); err != nil {
		t.Fatal(err)
	}
	a, err = app.Start(context.Background(), cfg)
	if err == nil {
		a.Stop()
		t.Fatal("started with a new ledger key over a store keyed with another")
	}
}

// dirConfig is a loopback server with its data, keyring and keys in dir.
func dirConfig(dir string) config.Config {
	return config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK:     config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keyring.age"), IdentityFile: filepath.Join(dir, "identity.txt")}},
		Metrics: config.MetricsConfig{Listen: "off"},
		Logger:  slog.New(slog.DiscardHandler),
	}
}
