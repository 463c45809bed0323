// Package e2e runs tokenvault end to end: a real server (badger store,
// age keyring, gRPC) started in-process through internal/app, called
// through the generated client.
package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/kek/hcvault"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/pgtest"
	"github.com/tokenvault/tokenvault/internal/vaulttest"
	"github.com/tokenvault/tokenvault/vault/pgstore"
	"github.com/tokenvault/tokenvault/vault/receipt"
)

// env is one server's directories and KEK; start/stop it as often as a
// test needs.
type env struct {
	dataDir, keysDir string
	logs             *syncBuffer
	vault            *vaulttest.Server // nil for the local keyring
	vaultCfg         hcvault.Config
	retention        time.Duration // backup retention; 0 for the default
	purgeInterval    time.Duration // expired-token purge; 0 for the default
	pgDSN            string        // the PostgreSQL store's database; "" for badger
	pgDB             *pgtest.DB    // the same; nil for badger
	holds            config.HoldsConfig
	now              func() time.Time // the vault's clock; nil for time.Now
}

// newEnv uses the local age keyring.
func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	return &env{dataDir: filepath.Join(dir, "data"), keysDir: filepath.Join(dir, "keys"), logs: &syncBuffer{}}
}

// newVaultEnv uses a real HashiCorp Vault server's transit engine as the
// KEK (skipped locally without one, mandatory in CI; see internal/vaulttest).
func newVaultEnv(t *testing.T) *env {
	srv := vaulttest.Start(t)
	mount, key := srv.Transit(t)
	e := newEnv(t)
	e.vault = srv
	e.vaultCfg = hcvault.Config{Address: srv.Addr, Token: srv.Token, Mount: mount, Key: key, Timeout: 2 * time.Second}
	return e
}

// newPostgresEnv uses the PostgreSQL store on a fresh, migrated database
// of a real server (skipped locally without one, mandatory in CI; see
// internal/pgtest), with the local keyring.
func newPostgresEnv(t *testing.T) *env {
	db := pgtest.New(t)
	if _, _, err := pgstore.Migrate(context.Background(), db.DSN); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.pgDSN, e.pgDB = db.DSN, db
	return e
}

// withEachKEK runs fn against the local keyring and against Vault transit
// (badger store), and with the local keyring on the PostgreSQL store.
func withEachKEK(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("kek=local", func(t *testing.T) { fn(t, newEnv(t)) })
	t.Run("kek=vault", func(t *testing.T) { fn(t, newVaultEnv(t)) })
	t.Run("store=postgres", func(t *testing.T) { fn(t, newPostgresEnv(t)) })
}

// withEachKEKOnBadger is withEachKEK for tests that read badger's data
// directory or back it up incrementally: the badger store only.
func withEachKEKOnBadger(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("kek=local", func(t *testing.T) { fn(t, newEnv(t)) })
	t.Run("kek=vault", func(t *testing.T) { fn(t, newVaultEnv(t)) })
}

func (e *env) config() config.Config {
	cfg := config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: e.dataDir,
		KEK: config.KEKConfig{
			Keyring:         agekeyring.Config{Path: filepath.Join(e.keysDir, "keyring.age"), IdentityFile: filepath.Join(e.keysDir, "identity.txt")},
			HealthInterval:  100 * time.Millisecond,
			BackupRetention: e.retention,
		},
		Metrics: config.MetricsConfig{Listen: "127.0.0.1:0"},
		// Debug level: the no-secrets-in-logs test wants every log line.
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	cfg.Rights.PurgeInterval = e.purgeInterval
	cfg.Holds, cfg.Now = e.holds, e.now
	if e.vault != nil {
		cfg.KEK.Provider, cfg.KEK.Vault = config.KEKVault, e.vaultCfg
	}
	if e.pgDSN != "" {
		cfg.Store = config.StoreConfig{Provider: config.StorePostgres, Postgres: config.PostgresConfig{DSN: e.pgDSN}}
	}
	return cfg
}

// start runs a server and returns a client for it; both stop at cleanup
// unless stopped earlier.
func (e *env) start(t *testing.T) (*app.App, *client.Client) {
	t.Helper()
	return e.startWith(t, func(*config.Config) {})
}

// startWith is start with the config changed by edit.
func (e *env) startWith(t *testing.T, edit func(*config.Config)) (*app.App, *client.Client) {
	t.Helper()
	cfg := e.config()
	edit(&cfg)
	a, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	c, err := client.Dial(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); a.Stop() })
	return a, c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// eraseVerified erases subject and returns the server's answer, its signed
// receipt (parsed, checked against the server's receipt key and naming
// subject) and that key.
func eraseVerified(t *testing.T, cx context.Context, c *client.Client, subject string) (client.Receipt, receipt.Receipt, ed25519.PublicKey) {
	t.Helper()
	r, err := c.EraseSubject(cx, subject)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.ReceiptPublicKey(cx)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := receipt.Parse(r.Signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Verify(pub); err != nil || rc.Subject != subject {
		t.Fatalf("receipt %+v does not verify for %s: %v", rc, subject, err)
	}
	return r, rc, pub
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
