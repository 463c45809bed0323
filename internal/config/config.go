// Package config is tokenvault's server configuration: one struct per
// section ([Config], [AuthConfig], [RightsConfig], ...) with its
// SetDefaults and Validate, and [Load], which reads a YAML file, then
// environment overrides. Defaults and validation come last ([Validate]).
// Every error names the key (or environment variable) at fault.
//
// The package only describes and checks settings; internal/app opens
// what they name. app imports config, never the reverse.
//
// Environment variables are derived from the YAML keys: TOKENVAULT_ plus
// the key path upper-cased and joined with "_", e.g. kek.vault.address is
// TOKENVAULT_KEK_VAULT_ADDRESS and log.level is TOKENVAULT_LOG_LEVEL.
// Secrets (kek.keyring.passphrase, kek.vault.token,
// kek.vault.auth.secret_id) are best given this way rather than in the
// file. The conventional VAULT_ADDR and VAULT_TOKEN are honoured when the
// corresponding keys are unset.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/crypto/kek/hcvault"
)

// Config is the server configuration: the YAML config file's shape (see
// deploy/tokenvault.example.yaml). Load reads it; internal/app starts a
// server from it.
type Config struct {
	// Listen is the gRPC address (default 127.0.0.1:7300).
	Listen string `yaml:"listen"`
	// DataDir holds the badger store (default ./tokenvault-data).
	DataDir string `yaml:"data_dir"`
	// Store selects the store: badger in DataDir, or PostgreSQL (store.go).
	Store StoreConfig `yaml:"store"`
	// AllowPlaintextNonLoopback permits serving plaintext gRPC on a
	// non-loopback address. Off by default: values and tokens would cross
	// the network in the clear.
	AllowPlaintextNonLoopback bool `yaml:"insecure_plaintext_nonloopback"`
	// KEK is the key-encryption key provider.
	KEK KEKConfig `yaml:"kek"`
	// Cache bounds the cache of unwrapped subject keys.
	Cache CacheConfig `yaml:"cache"`
	// Log configures structured logging (used by cmd to build Logger).
	Log LogConfig `yaml:"log"`
	// Metrics configures the HTTP listener for /metrics, /healthz, /readyz.
	Metrics MetricsConfig `yaml:"metrics"`
	// Maintenance configures background store maintenance.
	Maintenance MaintenanceConfig `yaml:"maintenance"`
	// Auth: TLS, API keys, policy, audit log (auth.go).
	Auth AuthConfig `yaml:"auth"`
	// ShutdownTimeout bounds the graceful drain (default 10s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Rights: data-subject rights, receipts, erasure ledger (rights.go).
	Rights RightsConfig `yaml:"rights"`
	// Volatile: card security codes held only in memory (volatile.go).
	Volatile VolatileConfig `yaml:"volatile"`
	// Memory: the Go heap's soft limit (memory.go).
	Memory MemoryConfig `yaml:"memory"`
	// Profiling serves pprof on a loopback address (off by default).
	Profiling ProfilingConfig `yaml:"profiling"`
	// Limits: per-identity tokenize rates under a policy (limits.go).
	Limits LimitsConfig `yaml:"limits"`
	// Console: the privacy console's web listener (console.go).
	Console ConsoleConfig `yaml:"console"`
	// Consent and Erasures: consent purposes without a policy, erasure
	// event retention (consent.go).
	Consent  ConsentConfig  `yaml:"consent"`
	Erasures ErasuresConfig `yaml:"erasures"`
	// Holds: legal hold classes at erasure (holds.go).
	Holds HoldsConfig `yaml:"holds"`
	// Replica names this server in its audit entries (replica.go).
	Replica ReplicaConfig `yaml:"replica"`
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger `yaml:"-"`
	// Now is the vault's clock (default time.Now): tests move it to the
	// end of a hold.
	Now func() time.Time `yaml:"-"`
}

// KEKConfig selects and configures the key-encryption key provider.
type KEKConfig struct {
	// Provider is "local" (default, the age keyring) or "vault"
	// (HashiCorp Vault transit).
	Provider string `yaml:"provider"`
	// Keyring is the local keyring (defaults: ./tokenvault-keys/keyring.age
	// opened by ./tokenvault-keys/identity.txt).
	Keyring agekeyring.Config `yaml:"keyring"`
	// Vault configures the HashiCorp Vault transit KEK.
	Vault hcvault.Config `yaml:"vault"`
	// BackupRetention is how long backups are kept: a KEK version is
	// retired only once its successor is older than this (default 30 days).
	BackupRetention time.Duration `yaml:"backup_retention"`
	// HealthInterval is how often the provider's health is checked
	// (default 5s).
	HealthInterval time.Duration `yaml:"health_interval"`
}

// CacheConfig bounds the cache of unwrapped subject keys.
type CacheConfig struct {
	// Size is the number of subjects (default 100,000).
	Size int `yaml:"size"`
	// TTL is how long an unwrapped key stays cached (default 10m).
	TTL time.Duration `yaml:"ttl"`
}

// LogConfig configures logging.
type LogConfig struct {
	Format string `yaml:"format"` // text (default) or json
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	// Access logs one line per call at info level (default true): method,
	// request id, caller, code, duration. False logs only failures at
	// info, successful calls at debug. A pointer: unset must mean true.
	Access *bool `yaml:"access"`
}

// AccessOn reports whether every call is logged at info level (log.access,
// true unless set to false).
func (c LogConfig) AccessOn() bool { return c.Access == nil || *c.Access }

// MetricsConfig configures the HTTP observability listener.
type MetricsConfig struct {
	// Listen is the address of /metrics, /healthz and /readyz (default
	// 127.0.0.1:9300); "off" disables the listener.
	Listen string `yaml:"listen"`
}

// MaintenanceConfig configures background store maintenance.
type MaintenanceConfig struct {
	// GCInterval is how often badger's value-log GC runs (default 10m).
	GCInterval time.Duration `yaml:"gc_interval"`
	// GCDiscardRatio is the share of stale data that makes a value-log
	// file worth rewriting (default 0.5).
	GCDiscardRatio float64 `yaml:"gc_discard_ratio"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7300"
	}
	if c.DataDir == "" {
		c.DataDir = "tokenvault-data"
	}
	c.Store.SetDefaults()
	k := &c.KEK
	if k.Provider == "" {
		k.Provider = KEKLocal
	}
	if k.Provider == KEKVault {
		k.Vault.SetDefaults()
	}
	if k.BackupRetention == 0 {
		k.BackupRetention = 30 * 24 * time.Hour
	}
	if k.HealthInterval == 0 {
		k.HealthInterval = 5 * time.Second
	}
	if k.Keyring.Path == "" {
		k.Keyring.Path = filepath.Join("tokenvault-keys", "keyring.age")
	}
	if k.Keyring.IdentityFile == "" && k.Keyring.Passphrase == "" {
		k.Keyring.IdentityFile = filepath.Join(filepath.Dir(k.Keyring.Path), "identity.txt")
	}
	if c.Cache.Size == 0 {
		c.Cache.Size = 100_000
	}
	if c.Cache.TTL == 0 {
		c.Cache.TTL = 10 * time.Minute
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Access == nil {
		on := true
		c.Log.Access = &on
	}
	if c.Metrics.Listen == "" {
		c.Metrics.Listen = "127.0.0.1:9300"
	}
	if c.Maintenance.GCInterval == 0 {
		c.Maintenance.GCInterval = 10 * time.Minute
	}
	if c.Maintenance.GCDiscardRatio == 0 {
		c.Maintenance.GCDiscardRatio = 0.5
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	c.Rights.keysDir = filepath.Dir(c.KEK.Keyring.Path)
	c.Rights.SetDefaults()
	c.Volatile.SetDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Auth.SetDefaults()
	c.Auth.setPathDefaults(c.DataDir, c.KEK.Keyring.Path)
	c.Limits.SetDefaults()
	c.Console.SetDefaults()
	c.Erasures.SetDefaults()
	c.Replica.SetDefaults()
}

// Validate reports every problem at once, each naming its config key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if host, err := splitListen(c.Listen); err != nil {
		bad("listen: %q is not host:port: %v", c.Listen, err)
	} else if err := c.validateListen(host); err != nil {
		errs = append(errs, err)
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DataDir == "" {
		bad("data_dir: must not be empty")
	}
	if err := c.Memory.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Store.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Auth.Audit.validateSink(c.Store); err != nil {
		errs = append(errs, err)
	}
	if err := c.Rights.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(c.Volatile.Validate(), c.Volatile.validatePeers(c.Replica.ID, c.Auth.PolicyFile != "", c.AllowPlaintextNonLoopback)); err != nil {
		errs = append(errs, err)
	}
	if err := c.Profiling.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Holds.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Console.validate(c.Auth.TLSEnabled(), c.AllowPlaintextNonLoopback, c.Auth.PolicyFile != ""); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(c.Consent.Validate(c.Auth.PolicyFile), c.Erasures.Validate()); err != nil {
		errs = append(errs, err)
	}
	if err := c.Replica.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.KEK.Provider {
	case KEKLocal:
		if err := c.KEK.Keyring.Validate(); err != nil {
			errs = append(errs, err)
		}
	case KEKVault:
		if err := c.KEK.Vault.Validate(); err != nil {
			errs = append(errs, err)
		}
	default:
		bad("kek.provider: %q is not %q or %q", c.KEK.Provider, KEKLocal, KEKVault)
	}
	if c.KEK.BackupRetention < 0 {
		bad("kek.backup_retention: must not be negative")
	}
	if c.KEK.HealthInterval < 0 {
		bad("kek.health_interval: must not be negative")
	}
	if c.Cache.Size < 0 {
		bad("cache.size: must not be negative")
	}
	if c.Cache.TTL < 0 {
		bad("cache.ttl: must not be negative")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format: %q is not text or json", c.Log.Format)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Log.Level)); err != nil {
		bad("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Metrics.Listen != "off" {
		if _, err := splitListen(c.Metrics.Listen); err != nil {
			bad("metrics.listen: %q is not host:port or off: %v", c.Metrics.Listen, err)
		}
	}
	if c.Maintenance.GCInterval < 0 {
		bad("maintenance.gc_interval: must not be negative")
	}
	if r := c.Maintenance.GCDiscardRatio; r <= 0 || r >= 1 {
		bad("maintenance.gc_discard_ratio: must be between 0 and 1, not %v", r)
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout: must not be negative")
	}
	return errors.Join(errs...)
}

// KEK provider names.
const (
	KEKLocal = "local"
	KEKVault = "vault"
)

// splitListen is net.SplitHostPort for an address to listen on or dial,
// with the port checked too (a number up to 65535, or a service name):
// SplitHostPort takes "127.0.0.1:99999", which only the listen would
// refuse, after the server had created its keys and audit log.
func splitListen(addr string) (host string, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", fmt.Errorf("port %q: not a port number (0-65535) or service name", port)
	}
	return host, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
