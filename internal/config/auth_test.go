package config_test

import (
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
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
		auth   config.AuthConfig
		want   string // "" = valid
	}{
		{"dev mode on loopback", "127.0.0.1:7300", false, config.AuthConfig{}, ""},
		{"dev mode on localhost", "localhost:7300", false, config.AuthConfig{}, ""},
		{"plaintext non-loopback", "0.0.0.0:7300", false, config.AuthConfig{PolicyFile: "p"}, "listen: refusing plaintext gRPC"},
		{"plaintext non-loopback allowed", "0.0.0.0:7300", true, config.AuthConfig{PolicyFile: "p"}, ""},
		{"non-loopback without policy", "0.0.0.0:7300", true, config.AuthConfig{}, "auth.policy_file: required"},
		{"TLS without policy", "127.0.0.1:7300", false, config.AuthConfig{TLS: tlsOn}, "auth.policy_file: required"},
		{"TLS non-loopback", "0.0.0.0:7300", false, config.AuthConfig{TLS: tlsOn, PolicyFile: "p"}, ""},
		{"cert without key", "127.0.0.1:7300", false, config.AuthConfig{TLS: auth.TLSFiles{Cert: "c"}, PolicyFile: "p"}, "auth.tls.key_file: required"},
		{"key without cert", "127.0.0.1:7300", false, config.AuthConfig{TLS: auth.TLSFiles{Key: "k"}, PolicyFile: "p"}, "auth.tls.cert_file: required"},
		{"client CA without TLS", "127.0.0.1:7300", false, config.AuthConfig{TLS: auth.TLSFiles{ClientCA: "ca"}, PolicyFile: "p"}, "auth.tls.cert_file: client certificates"},
		{"require without CA", "127.0.0.1:7300", false, config.AuthConfig{TLS: auth.TLSFiles{Cert: "c", Key: "k", RequireClientCert: true}, PolicyFile: "p"}, "auth.tls.client_ca_file: required"},
		{"bad API key", "127.0.0.1:7300", false, config.AuthConfig{APIKeys: []auth.APIKey{{Name: "a", Hash: hash}, {Name: "b", Hash: "x"}}}, "auth.api_keys[1].hash: must start with"},
		{"duplicate API key", "127.0.0.1:7300", false, config.AuthConfig{APIKeys: []auth.APIKey{{Name: "a", Hash: hash}, {Name: "a", Hash: hash}}}, "auth.api_keys[1].name"},
		{"negative checkpoint", "127.0.0.1:7300", false, config.AuthConfig{Audit: config.AuditConfig{CheckpointEvery: -1}}, "auth.audit.checkpoint_every"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Config{Listen: c.listen, Auth: c.auth, AllowPlaintextNonLoopback: c.plain, DataDir: t.TempDir()}
			cfg.SetDefaults()
			err := cfg.Validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestAuthPathDefaults(t *testing.T) {
	cfg := config.Config{DataDir: "/srv/tv/data"}
	cfg.SetDefaults()
	if cfg.Auth.Audit.Path != "/srv/tv/tokenvault-audit/audit.jsonl" ||
		cfg.Auth.Audit.SigningKey != "tokenvault-keys/audit-signing.key" {
		t.Fatalf("defaults: %+v", cfg.Auth.Audit)
	}
}
