package config_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/config"
)

// TestStoreConfig: the store section's defaults, file keys, environment
// overrides and errors, none of which quotes the DSN.
func TestStoreConfig(t *testing.T) {
	cfg, err := load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Provider != config.StoreBadger {
		t.Fatalf("default store.provider = %q", cfg.Store.Provider)
	}
	const dsn = "postgres://tv:s3cret-pw@db.example:5432/tv?sslmode=verify-full&sslrootcert=/etc/tv/ca.pem"
	cfg, err = load(t, "store:\n  provider: postgres\n", map[string]string{"TOKENVAULT_STORE_POSTGRES_DSN": dsn})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Postgres.DSN != dsn || cfg.Store.Postgres.MaxConns != 16 {
		t.Fatalf("postgres from the environment: max_conns %d, dsn set %v", cfg.Store.Postgres.MaxConns, cfg.Store.Postgres.DSN == dsn)
	}
	cfg, err = load(t, "store:\n  provider: postgres\n  postgres:\n    dsn: host=db user=tv\n    max_conns: 40\n", nil)
	if err != nil || cfg.Store.Postgres.MaxConns != 40 {
		t.Fatalf("file keys: %+v, %v", cfg.Store.Postgres.MaxConns, err)
	}
	// The mapped-file limit: default, off, set, from the environment.
	for _, tc := range []struct {
		yaml string
		env  map[string]string
		want int64
	}{
		{"", nil, config.DefaultMappedLimitMiB << 20},
		{"store:\n  badger:\n    mapped_limit_mib: 0\n", nil, 0},
		{"store:\n  badger:\n    mapped_limit_mib: 512\n", nil, 512 << 20},
		{"", map[string]string{"TOKENVAULT_STORE_BADGER_MAPPED_LIMIT_MIB": "128"}, 128 << 20},
	} {
		cfg, err := load(t, tc.yaml, tc.env)
		if runtime.GOOS == "linux" && (err != nil || cfg.Store.Badger.MappedLimit() != tc.want) {
			t.Errorf("%q %v: mapped limit %d, %v; want %d", tc.yaml, tc.env, cfg.Store.Badger.MappedLimit(), err, tc.want)
		}
	}
	for _, tc := range []struct {
		yaml string
		env  map[string]string
		want string
	}{
		{"store:\n  provider: mysql\n", nil, `store.provider: "mysql" is not "badger" or "postgres"`},
		{"store:\n  provider: postgres\n", nil, "store.postgres.dsn: must be set"},
		{"store:\n  provider: postgres\n", map[string]string{"TOKENVAULT_STORE_POSTGRES_DSN": "s3cret-pw"}, "store.postgres.dsn: not a key=value"},
		{"store:\n  provider: postgres\n  postgres:\n    dsn: host=db password=s3cret-pw\n    max_conns: -2\n", nil, "store.postgres.max_conns: must be between 1 and 1000"},
		{"store:\n  postgres:\n    pool: 5\n", nil, "store.postgres.pool: unknown key"},
		{"store:\n  badger:\n    mapped_limit_mib: 16\n", nil, "store.badger.mapped_limit_mib: must be 0 (off) or between 64 and"},
		{"store:\n  badger:\n    mapped_limit_mib: -1\n", nil, "store.badger.mapped_limit_mib: must be 0 (off) or between 64 and"},
		{"store:\n  badger:\n    mapped_limit: 100\n", nil, "store.badger.mapped_limit: unknown key"},
	} {
		_, err := load(t, tc.yaml, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%q: the error quotes the DSN: %v", tc.yaml, err)
		}
	}
}
