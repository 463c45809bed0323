package config_test

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestAuditRotationConfig(t *testing.T) {
	cfg, err := load(t, "auth:\n  audit:\n    rotate:\n      max_size: 104857600\n      max_age: 24h\n      compress: true\n    retention:\n      max_files: 30\n      max_age: 720h\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Auth.Audit
	if a.Rotate.MaxSize != 100<<20 || a.Rotate.MaxAge != 24*time.Hour || !a.Rotate.Compress ||
		a.Retention.MaxFiles != 30 || a.Retention.MaxAge != 720*time.Hour {
		t.Fatalf("%+v", a)
	}
	_, err = load(t, "auth:\n  audit:\n    ship: kafka\n    syslog:\n      network: sctp\n    rotate:\n      max_size: 1000\n      max_age: -1h\n    retention:\n      max_files: -1\n      max_age: -1s\n", nil)
	for _, want := range []string{`auth.audit.ship: "kafka" is not none, stdout or syslog`, `auth.audit.syslog.network: "sctp"`, "auth.audit.syslog.address: required", "auth.audit.rotate.max_size: 1000 bytes is below", "auth.audit.rotate.max_age: must not be negative",
		"auth.audit.retention.max_files: must not be negative", "auth.audit.retention.max_age: must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestReplicaConfig(t *testing.T) {
	cfg, err := load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := os.Hostname(); cfg.Replica.ID == "" || host != "" && len(host) <= 64 && cfg.Replica.ID != host {
		t.Errorf("default replica.id %q, host %q", cfg.Replica.ID, host)
	}
	if cfg, err = load(t, "replica:\n  id: eu-west-1a\n", nil); err != nil || cfg.Replica.ID != "eu-west-1a" {
		t.Fatalf("%+v %v", cfg.Replica, err)
	}
	if _, err = load(t, "replica:\n  id: \"a b\"\n", nil); err == nil || !strings.Contains(err.Error(), `replica.id: "a b" is not`) {
		t.Errorf("bad id: %v", err)
	}
}

func TestAuditSinkConfig(t *testing.T) {
	cfg, err := load(t, "", nil)
	if err != nil || cfg.Auth.Audit.Sink != "file" || cfg.Auth.Audit.DBSink() {
		t.Fatalf("default sink %q, %v", cfg.Auth.Audit.Sink, err)
	}
	// The store's DSN serves, or the sink's own (from the environment).
	cfg, err = load(t, "store:\n  provider: postgres\n  postgres:\n    dsn: host=db1 dbname=tv\nauth:\n  audit:\n    sink: postgres\n", nil)
	if err != nil || !cfg.Auth.Audit.DBSink() || cfg.Auth.Audit.PostgresDSN(cfg.Store) != "host=db1 dbname=tv" {
		t.Fatalf("%+v %v", cfg.Auth.Audit, err)
	}
	cfg, err = load(t, "auth:\n  audit:\n    sink: postgres\n", map[string]string{"TOKENVAULT_AUTH_AUDIT_POSTGRES_DSN": "postgres://audit@db2/tv"})
	if err != nil || cfg.Auth.Audit.PostgresDSN(cfg.Store) != "postgres://audit@db2/tv" {
		t.Fatalf("%+v %v", cfg.Auth.Audit, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"auth:\n  audit:\n    sink: kafka\n", `auth.audit.sink: "kafka" is not "file" or "postgres"`},
		{"auth:\n  audit:\n    sink: postgres\n", "auth.audit.postgres.dsn: must be set with auth.audit.sink postgres"},
		{"auth:\n  audit:\n    sink: postgres\n    postgres:\n      dsn: s3cret-pw\n", "auth.audit.postgres.dsn: not a key=value"},
	} {
		_, err := load(t, tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want %q, got %v", tc.yaml, tc.want, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the DSN is quoted: %v", err)
		}
	}
}
