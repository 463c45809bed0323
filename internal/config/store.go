package config

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
)

// Store provider names (store.provider).
const (
	StoreBadger   = "badger"
	StorePostgres = "postgres"
)

// StoreConfig is the "store" section: where tokens and subject keys live.
type StoreConfig struct {
	// Provider is "badger" (default: the embedded store in data_dir, one
	// process) or "postgres" (a PostgreSQL database several replicas
	// share).
	Provider string `yaml:"provider"`
	// Postgres configures the PostgreSQL store.
	Postgres PostgresConfig `yaml:"postgres"`
	// Badger tunes the embedded store.
	Badger BadgerConfig `yaml:"badger"`
}

// BadgerConfig tunes the badger store (store.badger).
type BadgerConfig struct {
	// MappedLimitMiB bounds the pages of badger's memory-mapped files
	// resident in the process (its RssFile, default 256 MiB): above it
	// they are dropped from the process (tables stay in the kernel's page
	// cache). 0 turns the limit off. Linux only. See README "Memory".
	MappedLimitMiB *int `yaml:"mapped_limit_mib"`
}

// DefaultMappedLimitMiB is store.badger.mapped_limit_mib's default.
const DefaultMappedLimitMiB = 256

// MappedLimit is the limit in bytes (0: off).
func (c BadgerConfig) MappedLimit() int64 {
	if c.MappedLimitMiB == nil && runtime.GOOS != "linux" { // the store refuses a limit elsewhere
		return 0
	}
	return mibBytes(c.MappedLimitMiB, DefaultMappedLimitMiB)
}

// minMappedLimitMiB: the process's own executable is file-backed too
// (~20 MiB resident), so a smaller limit would drop the tables' pages on
// every check.
const minMappedLimitMiB = 64

// PostgresConfig configures the PostgreSQL store (store.postgres).
type PostgresConfig struct {
	// DSN is a libpq connection string or postgres:// URL. It may hold a
	// password: best given as TOKENVAULT_STORE_POSTGRES_DSN, never
	// logged. TLS is the DSN's: sslmode=verify-full with sslrootcert=FILE
	// (and sslcert/sslkey for client certificates). Several hosts with
	// target_session_attrs=read-write find the primary after a failover.
	DSN string `yaml:"dsn"`
	// MaxConns bounds the connection pool of one replica (default 16).
	MaxConns int `yaml:"max_conns"`
}

// SetDefaults fills unset fields.
func (c *StoreConfig) SetDefaults() {
	if c.Provider == "" {
		c.Provider = StoreBadger
	}
	if c.Provider == StorePostgres && c.Postgres.MaxConns == 0 {
		c.Postgres.MaxConns = 16
	}
}

// Validate names the offending key. It never quotes the DSN (a secret).
func (c *StoreConfig) Validate() error {
	var errs []error
	switch c.Provider {
	case StoreBadger:
	case StorePostgres:
		dsn := strings.TrimSpace(c.Postgres.DSN)
		switch {
		case dsn == "":
			errs = append(errs, errors.New("store.postgres.dsn: must be set with store.provider postgres (or TOKENVAULT_STORE_POSTGRES_DSN)"))
		case !strings.Contains(dsn, "=") && !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://"):
			errs = append(errs, errors.New("store.postgres.dsn: not a key=value connection string or postgres:// URL"))
		}
		if c.Postgres.MaxConns < 1 || c.Postgres.MaxConns > 1000 {
			errs = append(errs, fmt.Errorf("store.postgres.max_conns: must be between 1 and 1000, not %d", c.Postgres.MaxConns))
		}
	default:
		errs = append(errs, fmt.Errorf("store.provider: %q is not %q or %q", c.Provider, StoreBadger, StorePostgres))
	}
	if err := checkMiB("store.badger.mapped_limit_mib", c.Badger.MappedLimitMiB, minMappedLimitMiB, "off"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
