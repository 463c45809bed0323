package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/internal/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func write(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "tokenvault.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, content string, e map[string]string) (config.Config, error) {
	t.Helper()
	cfg, err := config.Load(write(t, content), env(e))
	if err != nil {
		return cfg, err
	}
	return cfg, config.Validate(&cfg)
}

// TestExampleConfig: the documented example loads and validates as is.
func TestExampleConfig(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "deploy", "tokenvault.example.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7300" || cfg.KEK.Provider != "local" || cfg.KEK.BackupRetention != 720*time.Hour ||
		cfg.Cache.Size != 100000 || cfg.Maintenance.GCDiscardRatio != 0.5 || cfg.KEK.Vault.Mount != "transit" {
		t.Fatalf("example config loaded as %+v", cfg)
	}
}

func TestNoFileMeansDefaults(t *testing.T) {
	cfg, err := config.Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "tokenvault-data" || cfg.Metrics.Listen != "127.0.0.1:9300" || cfg.ShutdownTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := load(t, "listen: 127.0.0.1:1\nkek:\n  provider: local\n", map[string]string{
		"TOKENVAULT_LISTEN":                         "127.0.0.1:2",
		"TOKENVAULT_KEK_PROVIDER":                   "vault",
		"TOKENVAULT_KEK_VAULT_KEY":                  "other",
		"TOKENVAULT_KEK_VAULT_AUTH_METHOD":          "approle",
		"TOKENVAULT_KEK_VAULT_AUTH_ROLE_ID":         "r",
		"TOKENVAULT_KEK_VAULT_AUTH_SECRET_ID":       "s3cr3t",
		"TOKENVAULT_KEK_BACKUP_RETENTION":           "48h",
		"TOKENVAULT_CACHE_SIZE":                     "7",
		"TOKENVAULT_MAINTENANCE_GC_DISCARD_RATIO":   "0.7",
		"TOKENVAULT_INSECURE_PLAINTEXT_NONLOOPBACK": "false",
		"VAULT_ADDR":                  "http://127.0.0.1:8200",
		"TOKENVAULT_RIGHTS_RETENTION": "pan=2160h, email=720h",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:2" || cfg.KEK.Provider != "vault" || cfg.KEK.Vault.Key != "other" ||
		cfg.KEK.Vault.Auth.SecretID != "s3cr3t" || cfg.KEK.BackupRetention != 48*time.Hour || cfg.Cache.Size != 7 ||
		cfg.KEK.Vault.Address != "http://127.0.0.1:8200" || cfg.Maintenance.GCDiscardRatio != 0.7 ||
		cfg.Rights.Retention["pan"] != 2160*time.Hour || cfg.Rights.Retention["email"] != 720*time.Hour {
		t.Fatalf("env overrides not applied: %+v", cfg)
	}
	names := strings.Join(config.EnvNames(), " ")
	for _, want := range []string{"TOKENVAULT_KEK_KEYRING_PASSPHRASE", "TOKENVAULT_KEK_VAULT_TOKEN", "TOKENVAULT_METRICS_LISTEN"} {
		if !strings.Contains(names, want) {
			t.Errorf("EnvNames lacks %s", want)
		}
	}
}

// TestBadConfig: each bad key or value is refused with a message naming it.
func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"unknown key", "lisen: 127.0.0.1:7300\n", nil, "lisen: unknown key (line 1; did you mean listen?)"},
		{"unknown nested key", "kek:\n  keyring:\n    pth: x\n", nil, "kek.keyring.pth: unknown key (line 3; did you mean kek.keyring.path?)"},
		{"bad listen", "listen: nonsense\n", nil, "listen"},
		{"listen port out of range", "listen: 127.0.0.1:99999\n", nil, `listen: "127.0.0.1:99999" is not host:port: port "99999": not a port number`},
		{"listen port not a number", "listen: 127.0.0.1:7x00\n", nil, `port "7x00"`},
		{"metrics port out of range", "metrics:\n  listen: 127.0.0.1:70000\n", nil, `metrics.listen: "127.0.0.1:70000"`},
		{"console port out of range", "console:\n  listen: 127.0.0.1:65536\n", nil, `console.listen: "127.0.0.1:65536"`},
		{"plaintext non-loopback", "listen: 0.0.0.0:7300\n", nil, "listen: refusing plaintext"},
		{"bad provider", "kek:\n  provider: hsm\n", nil, "kek.provider"},
		{"vault without address", "kek:\n  provider: vault\n  vault:\n    token: t\n", nil, "kek.vault.address"},
		{"vault without token", "kek:\n  provider: vault\n  vault:\n    address: http://127.0.0.1:8200\n", nil, "kek.vault.token"},
		{"vault bad key name", "kek:\n  provider: vault\n  vault:\n    address: http://x:1\n    token: t\n    key: ../sys\n", nil, "kek.vault.key"},
		{"vault plain http on the network", "kek:\n  provider: vault\n  vault:\n    address: http://vault.example:8200\n    token: t\n", nil, "kek.vault.insecure_http_nonloopback"},
		{"bad duration", "kek:\n  backup_retention: forever\n", nil, "duration"},
		{"negative retention", "kek:\n  backup_retention: -1h\n", nil, "kek.backup_retention"},
		{"bad log format", "log:\n  format: xml\n", nil, "log.format"},
		{"bad log level", "log:\n  level: loud\n", nil, "log.level"},
		{"bad metrics listen", "metrics:\n  listen: everywhere\n", nil, "metrics.listen"},
		{"bad discard ratio", "maintenance:\n  gc_discard_ratio: 2\n", nil, "maintenance.gc_discard_ratio"},
		{"negative cache", "cache:\n  size: -1\n", nil, "cache.size"},
		{"not a mapping", "- a\n- b\n", nil, "top level: want a mapping of keys, not a list (line 1)"},
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", nil, "more than one"},
		{"bad env duration", "", map[string]string{"TOKENVAULT_CACHE_TTL": "soon"}, "TOKENVAULT_CACHE_TTL (cache.ttl)"},
		{"bad env bool", "", map[string]string{"TOKENVAULT_INSECURE_PLAINTEXT_NONLOOPBACK": "maybe"}, "TOKENVAULT_INSECURE_PLAINTEXT_NONLOOPBACK"},
		{"bad env int", "", map[string]string{"TOKENVAULT_CACHE_SIZE": "many"}, "TOKENVAULT_CACHE_SIZE"},
		{"bad env retention", "", map[string]string{"TOKENVAULT_RIGHTS_RETENTION": "pan"}, "TOKENVAULT_RIGHTS_RETENTION"},
		{"bad retention kind", "rights:\n  retention:\n    visa: 1h\n", nil, "rights.retention"},
		{"bad purge interval", "rights:\n  purge_interval: -1s\n", nil, "rights.purge_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.yaml, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("vault plain http allowed explicitly", func(t *testing.T) {
		for name, c := range map[string]struct {
			yaml string
			env  map[string]string
		}{
			"file": {"kek:\n  provider: vault\n  vault:\n    address: http://vault.example:8200\n    token: t\n    insecure_http_nonloopback: true\n", nil},
			"env":  {"kek:\n  provider: vault\n", map[string]string{"VAULT_ADDR": "http://vault.example:8200", "VAULT_TOKEN": "t", "TOKENVAULT_KEK_VAULT_INSECURE_HTTP_NONLOOPBACK": "true"}},
		} {
			if cfg, err := load(t, c.yaml, c.env); err != nil || !cfg.KEK.Vault.AllowHTTPNonLoopback {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
	t.Run("secret not echoed", func(t *testing.T) {
		_, err := load(t, "", map[string]string{"TOKENVAULT_CACHE_SIZE": "hunter2-secret"})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("several problems at once", func(t *testing.T) {
		_, err := load(t, "listen: x\nlog:\n  format: xml\n", nil)
		if err == nil || !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), "log.format") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"), env(nil)); err == nil {
			t.Fatal("loaded a missing file")
		}
	})
}

// TestSet: one setting from its text form, by YAML key path (what
// cmd/tokenvault's flags use); errors name the key, not the value.
func TestSet(t *testing.T) {
	var cfg config.Config
	for key, v := range map[string]string{
		"listen": "127.0.0.1:1", "kek.keyring.path": "k.age", "kek.backup_retention": "48h",
		"insecure_plaintext_nonloopback": "true", "cache.size": "7", "maintenance.gc_discard_ratio": "0.25",
		"rights.retention": "pan=1h, email=2h", "auth.tls.require_client_cert": "true",
	} {
		if err := cfg.Set(key, v); err != nil {
			t.Fatalf("Set(%s): %v", key, err)
		}
	}
	if cfg.Listen != "127.0.0.1:1" || cfg.KEK.Keyring.Path != "k.age" || cfg.KEK.BackupRetention != 48*time.Hour ||
		!cfg.AllowPlaintextNonLoopback || cfg.Cache.Size != 7 || cfg.Maintenance.GCDiscardRatio != 0.25 ||
		len(cfg.Rights.Retention) != 2 || cfg.Rights.Retention["email"] != 2*time.Hour || !cfg.Auth.TLS.RequireClientCert {
		t.Fatalf("Set did not set: %+v", cfg)
	}
	// A map is replaced, not merged; API keys add up.
	cfg.Set("rights.retention", "ssn=3h")
	cfg.Set("auth.api_keys", "a=sha256:01")
	cfg.Set("auth.api_keys", "b=sha256:02,c=sha256:03")
	if len(cfg.Rights.Retention) != 1 || len(cfg.Auth.APIKeys) != 3 || cfg.Auth.APIKeys[2].Name != "c" || cfg.Auth.APIKeys[2].Hash != "sha256:03" {
		t.Fatalf("retention %v, api keys %v", cfg.Rights.Retention, cfg.Auth.APIKeys)
	}
	for _, tc := range []struct{ key, value, want string }{
		{"lisen", "x", "lisen: not a settable configuration key"},
		{"kek", "x", "kek: not a settable"}, // a section, not a setting
		{"kek.vault.token", "x", ""},
		{"cache.ttl", "hunter2", "cache.ttl: not a duration"},
		{"auth.api_keys", "hunter2", "auth.api_keys: want NAME=sha256:HEX"},
	} {
		err := cfg.Set(tc.key, tc.value)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) || err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Set(%s): %v, want %q", tc.key, err, tc.want)
		}
	}
	if err := cfg.Set("nope", ""); !errors.Is(err, config.ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
}

// TestAPIKeysEnv: TOKENVAULT_API_KEYS adds to the file's keys.
func TestAPIKeysEnv(t *testing.T) {
	cfg, err := config.Load(write(t, "auth:\n  api_keys:\n    - name: a\n      hash: sha256:01\n"),
		env(map[string]string{config.APIKeysEnv: "b=sha256:02, c=sha256:03"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Auth.APIKeys) != 3 || cfg.Auth.APIKeys[0].Name != "a" || cfg.Auth.APIKeys[2].Name != "c" {
		t.Fatalf("api keys %v", cfg.Auth.APIKeys)
	}
	_, err = config.Load("", env(map[string]string{config.APIKeysEnv: "hunter2"}))
	if err == nil || !strings.Contains(err.Error(), config.APIKeysEnv) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad %s: %v", config.APIKeysEnv, err)
	}
}

// TestLogAccess: log.access is on unless set to false, from the file, the
// environment or Set (the flag), and a bad value names the key.
func TestLogAccess(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       bool
	}{
		{"default", "", nil, true},
		{"file false", "log:\n  access: false\n", nil, false},
		{"file true", "log:\n  access: true\n", nil, true},
		{"env false", "", map[string]string{"TOKENVAULT_LOG_ACCESS": "false"}, false},
		{"env over file", "log:\n  access: false\n", map[string]string{"TOKENVAULT_LOG_ACCESS": "true"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(t, tc.yaml, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Log.AccessOn(); got != tc.want || cfg.Log.Access == nil || *cfg.Log.Access != tc.want {
				t.Fatalf("log.access = %v, want %v", got, tc.want)
			}
		})
	}
	var cfg config.Config
	if err := cfg.Set("log.access", "false"); err != nil || cfg.Log.AccessOn() {
		t.Fatalf(`Set("log.access", "false"): %v, on = %v`, err, cfg.Log.AccessOn())
	}
	if err := cfg.Set("log.access", "maybe"); err == nil || !strings.Contains(err.Error(), "log.access") {
		t.Fatalf(`Set("log.access", "maybe") = %v, want an error naming log.access`, err)
	}
	if _, err := load(t, "", map[string]string{"TOKENVAULT_LOG_ACCESS": "maybe"}); err == nil || !strings.Contains(err.Error(), "TOKENVAULT_LOG_ACCESS") {
		t.Fatalf("bad env value: %v", err)
	}
}

// TestEveryProblemAtOnce: unknown keys, values of the wrong type, bad
// environment variables and Validate's findings are reported together,
// each by key path (and line), not by Go type; values are not echoed.
func TestEveryProblemAtOnce(t *testing.T) {
	path := write(t, "kek:\n  provder: vault\ncache:\n  size: hunter2\n  ttl: soon\nlog:\n  level: loud\nauth:\n  api_keys:\n    - name: a\n      hsh: x\nrights:\n  retention: 5\n")
	cfg, err := config.Load(path, env(map[string]string{"TOKENVAULT_SHUTDOWN_TIMEOUT": "never"}))
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load: %v, want ErrInvalid", err)
	}
	all := errors.Join(err, config.Validate(&cfg)).Error()
	for _, want := range []string{
		path + ": kek.provder: unknown key (line 2; did you mean kek.provider?)",
		"cache.size: not an integer (line 4)",
		"cache.ttl: not a duration such as 30s, 10m or 720h (line 5)",
		"auth.api_keys[0].hsh: unknown key (line 11; did you mean auth.api_keys[0].hash?)",
		"rights.retention: not a mapping of KIND: DURATION (line 13)",
		"TOKENVAULT_SHUTDOWN_TIMEOUT (shutdown_timeout): not a duration",
		"log.level", // from Validate
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	for _, bad := range []string{"hunter2", "soon", "never", "KEKConfig", "not found in type"} {
		if strings.Contains(all, bad) {
			t.Errorf("%q in:\n%s", bad, all)
		}
	}
	// What was valid is still loaded.
	if cfg.Log.Level != "loud" || len(cfg.Auth.APIKeys) != 1 {
		t.Errorf("the rest of the file was not loaded: %+v", cfg)
	}
	// A file that is not YAML is one error, not ErrInvalid.
	if _, err := config.Load(write(t, "kek: [\n"), env(nil)); err == nil || errors.Is(err, config.ErrInvalid) {
		t.Errorf("syntax error: %v", err)
	}
}

// TestValidateListsEverySection: each section reports all its problems,
// not the first.
func TestValidateListsEverySection(t *testing.T) {
	_, err := load(t, "auth:\n  tls:\n    cert_file: c.pem\n    require_client_cert: true\n  audit:\n    checkpoint_every: -1\nrights:\n  purge_interval: -1s\n  rotation_interval: -1s\n  retention:\n    visa: 1h\n    pan: -1h\n", nil)
	for _, want := range []string{"auth.tls.key_file", "auth.tls.client_ca_file", "auth.audit.checkpoint_every",
		"rights.purge_interval", "rights.rotation_interval", "rights.retention.visa: unknown kind", "rights.retention.pan: must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
