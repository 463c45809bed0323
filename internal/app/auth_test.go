package app

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

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/keyfile"
	"github.com/tokenvault/tokenvault/internal/config"
)

// TestAuditKeyNotRecreated: a server whose audit log holds entries but whose
// signing key is gone refuses to start (a new key would hide the log's
// history) and creates nothing; with the log moved away too, it starts a
// new chain with a new key.
func TestAuditKeyNotRecreated(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK:     config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keys", "keyring.age")}},
		Metrics: config.MetricsConfig{Listen: "off"},
		Logger:  slog.New(slog.DiscardHandler),
	}
	a, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	logPath, key := a.AuditLogPath(), filepath.Join(dir, "keys", "audit-signing.key")
	// A reveal: the log gets entries (and a checkpoint at stop).
	cl, err := client.Dial(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	toks, err := cl.Tokenize(ctx, "s1", client.Field{Kind: "name", Value: "Ada Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Detokenize(ctx, "test", toks...); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(logPath); err != nil || st.Size() == 0 {
		t.Fatalf("the audit log holds nothing: %v", err)
	}
	oldPub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), cfg)
	if !errors.Is(err, keyfile.ErrNotExist) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "audit log holds entries") {
		t.Fatalf("start with the audit log but without its key: %v", err)
	}
	if _, err := os.Stat(key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a new audit signing key was created beside the old log")
	}
	if b, _ := os.ReadFile(key + ".pub"); !bytes.Equal(b, oldPub) {
		t.Fatal("the public key file was overwritten")
	}

	// An empty log has no history a new key could hide.
	os.Rename(logPath, logPath+".old")
	os.Rename(key+".pub", key+".pub.old")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err = Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start with an empty log: %v", err)
	}
	a.Stop()
	os.Remove(key)
	os.Remove(key + ".pub")
	os.Remove(logPath)

	// Starting over on purpose: the old log and public key moved away.
	a, err = Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start with a fresh log: %v", err)
	}
	a.Stop()
	if _, err := os.Stat(key); err != nil {
		t.Fatal("no new key for the new log:", err)
	}
}
