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
	"github.com/tokenvault/tokenvault/internal/auth"
)

// TestAuthConfigValidate: every rule, with the error naming the key.
func TestAuthConfigValidate(t *testing.T) {
	_, hash, err := auth.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	tlsOn := auth.TLSFiles{Cert: "c.pem", Key: "k.pem"}
	cases := []struct {
		name   string
		listen string
		plain  bool // --insecure-plaintext-nonloopback
		auth   AuthConfig
		want   string // "" = valid
	}{
		{"dev mode on loopback", "127.0.0.1:7300", false, AuthConfig{}, ""},
		{"dev mode on localhost", "localhost:7300", false, AuthConfig{}, ""},
		{"plaintext non-loopback", "0.0.0.0:7300", false, AuthConfig{PolicyFile: "p"}, "listen: refusing plaintext gRPC"},
		{"plaintext non-loopback allowed", "0.0.0.0:7300", true, AuthConfig{PolicyFile: "p"}, ""},
		{"non-loopback without policy", "0.0.0.0:7300", true, AuthConfig{}, "auth.policy_file: required"},
		{"TLS without policy", "127.0.0.1:7300", false, AuthConfig{TLS: tlsOn}, "auth.policy_file: required"},
		{"TLS non-loopback", "0.0.0.0:7300", false, AuthConfig{TLS: tlsOn, PolicyFile: "p"}, ""},
		{"cert without key", "127.0.0.1:7300", false, AuthConfig{TLS: auth.TLSFiles{Cert: "c"}, PolicyFile: "p"}, "auth.tls.key_file: required"},
		{"key without cert", "127.0.0.1:7300", false, AuthConfig{TLS: auth.TLSFiles{Key: "k"}, PolicyFile: "p"}, "auth.tls.cert_file: required"},
		{"client CA without TLS", "127.0.0.1:7300", false, AuthConfig{TLS: auth.TLSFiles{ClientCA: "ca"}, PolicyFile: "p"}, "auth.tls.cert_file: client certificates"},
		{"require without CA", "127.0.0.1:7300", false, AuthConfig{TLS: auth.TLSFiles{Cert: "c", Key: "k", RequireClientCert: true}, PolicyFile: "p"}, "auth.tls.client_ca_file: required"},
		{"bad API key", "127.0.0.1:7300", false, AuthConfig{APIKeys: []auth.APIKey{{Name: "a", Hash: hash}, {Name: "b", Hash: "x"}}}, "auth.api_keys[1].hash: must start with"},
		{"duplicate API key", "127.0.0.1:7300", false, AuthConfig{APIKeys: []auth.APIKey{{Name: "a", Hash: hash}, {Name: "a", Hash: hash}}}, "auth.api_keys[1].name"},
		{"negative checkpoint", "127.0.0.1:7300", false, AuthConfig{Audit: AuditConfig{CheckpointEvery: -1}}, "auth.audit.checkpoint_every"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Listen: c.listen, Auth: c.auth, AllowPlaintextNonLoopback: c.plain, DataDir: t.TempDir()}
			cfg.SetDefaults()
			err := cfg.Validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestAuthPathDefaults(t *testing.T) {
	cfg := Config{DataDir: "/srv/tv/data"}
	cfg.SetDefaults()
	if cfg.Auth.Audit.Path != "/srv/tv/tokenvault-audit/audit.jsonl" ||
		cfg.Auth.Audit.SigningKey != "tokenvault-keys/audit-signing.key" {
		t.Fatalf("defaults: %+v", cfg.Auth.Audit)
	}
}

// TestAuditKeyNotRecreated: a server whose audit log holds entries but whose
// signing key is gone refuses to start (a new key would hide the log's
// history) and creates nothing; with the log moved away too, it starts a
// new chain with a new key.
func TestAuditKeyNotRecreated(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK:     KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keys", "keyring.age")}},
		Metrics: MetricsConfig{Listen: "off"},
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
