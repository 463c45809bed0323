package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tokenvault/tokenvault/internal/auth"
)

// AuthConfig says who may call and where calls are audited (config key
// "auth"). See README "Who may see what".
type AuthConfig struct {
	// TLS serves gRPC over TLS; with client_ca_file, client certificates
	// identify callers (mutual TLS).
	TLS auth.TLSFiles `yaml:"tls"`
	// APIKeys identify callers without certificates ("tokenvault apikey
	// new" makes a key and its hash; only the hash is configured).
	APIKeys []auth.APIKey `yaml:"api_keys"`
	// PolicyFile maps identities to roles and roles to permissions. Empty
	// is dev mode (every caller may do everything), allowed only on a
	// plaintext loopback listener.
	PolicyFile string `yaml:"policy_file"`
	// PolicyPollInterval: how often the policy file is checked for changes
	// (default 10s; negative: only on SIGHUP).
	PolicyPollInterval time.Duration `yaml:"policy_poll_interval"`
	Audit              AuditConfig   `yaml:"audit"`
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	// Path of the JSON-lines log (default: tokenvault-audit/audit.jsonl
	// beside the data directory).
	Path string `yaml:"path"`
	// SigningKey signs checkpoints (Ed25519; default: audit-signing.key
	// beside the keyring). It is created, with its public key in
	// SigningKey + ".pub", only while the log at Path holds no entries: a
	// missing key beside a log with entries stops the server.
	SigningKey string `yaml:"signing_key"`
	// A checkpoint every CheckpointEvery entries (default 1000) and at
	// least every CheckpointInterval while entries come in (default 1m).
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// AllowUnverifiedHistory lets the server start on a log whose end it
	// cannot verify (no valid checkpoint of its key, or more unsigned
	// entries after the last one than it ever leaves), instead of refusing.
	// The acceptance is written into the log. Only after checking the log
	// with `tokenvault audit verify`, and for one start.
	AllowUnverifiedHistory bool `yaml:"allow_unverified_history"`
	// Rotation and retention of rotated files (audit.go).
	Rotate    AuditRotateConfig    `yaml:"rotate"`
	Retention AuditRetentionConfig `yaml:"retention"`
	// Ship: none (default), stdout or syslog (audit.go).
	Ship   string            `yaml:"ship"`
	Syslog AuditSyslogConfig `yaml:"syslog"`
	// Sink: file (default) or postgres, where an entry must be durable
	// before the audited call answers (audit.go).
	Sink     string              `yaml:"sink"`
	Postgres AuditPostgresConfig `yaml:"postgres"`
}

// SetDefaults fills unset fields that do not depend on other sections.
func (c *AuthConfig) SetDefaults() {
	if c.PolicyPollInterval == 0 {
		c.PolicyPollInterval = 10 * time.Second
	}
	if c.Audit.Sink == "" {
		c.Audit.Sink = AuditSinkFile
	}
	if c.Audit.CheckpointEvery == 0 {
		c.Audit.CheckpointEvery = 1000
	}
	if c.Audit.CheckpointInterval == 0 {
		c.Audit.CheckpointInterval = time.Minute
	}
}

// setPathDefaults places the audit log beside the data directory (not in
// it: badger owns that directory) and the signing key beside the keyring.
func (c *AuthConfig) setPathDefaults(dataDir, keyring string) {
	if c.Audit.Path == "" {
		c.Audit.Path = filepath.Join(filepath.Dir(filepath.Clean(dataDir)), "tokenvault-audit", "audit.jsonl")
	}
	if c.Audit.SigningKey == "" {
		c.Audit.SigningKey = filepath.Join(filepath.Dir(keyring), "audit-signing.key")
	}
}

// TLSEnabled reports whether the listener serves TLS.
func (c *AuthConfig) TLSEnabled() bool { return c.TLS.Cert != "" || c.TLS.Key != "" }

// Validate reports every problem, each naming its key. Rules that
// involve the listen address are in Config.Validate.
func (c *AuthConfig) Validate() error {
	var errs []error
	bad := func(msg string) { errs = append(errs, errors.New(msg)) }
	t := c.TLS
	switch {
	case t.Cert != "" && t.Key == "":
		bad("auth.tls.key_file: required with auth.tls.cert_file")
	case t.Key != "" && t.Cert == "":
		bad("auth.tls.cert_file: required with auth.tls.key_file")
	case t.ClientCA != "" && t.Cert == "":
		bad("auth.tls.cert_file: client certificates (client_ca_file) need TLS: set cert_file and key_file")
	}
	if t.RequireClientCert && t.ClientCA == "" {
		bad("auth.tls.client_ca_file: required with require_client_cert")
	}
	if _, err := auth.NewAPIKeys(c.APIKeys); err != nil {
		errs = append(errs, fmt.Errorf("auth.api_keys%w", err))
	}
	if c.Audit.Path == "" {
		bad("auth.audit.path: must not be empty")
	}
	if c.Audit.SigningKey == "" {
		bad("auth.audit.signing_key: must not be empty")
	}
	if c.Audit.CheckpointEvery < 0 {
		bad("auth.audit.checkpoint_every: must not be negative")
	}
	if c.Audit.CheckpointInterval < 0 {
		bad("auth.audit.checkpoint_interval: must not be negative")
	}
	if err := c.Audit.validateRotation(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateListen checks the rules that tie security to the listen
// address: plaintext only on loopback (unless explicitly allowed), and
// dev mode (no policy) only on plaintext loopback.
func (c *Config) validateListen(host string) error {
	tlsOn := c.Auth.TLSEnabled()
	if !tlsOn && !c.AllowPlaintextNonLoopback && !isLoopback(host) {
		return fmt.Errorf("listen: refusing plaintext gRPC on non-loopback address %q; configure TLS (--tls-cert/--tls-key) or set --insecure-plaintext-nonloopback", c.Listen)
	}
	if c.Auth.PolicyFile == "" && (tlsOn || !isLoopback(host)) {
		return errors.New("auth.policy_file: required with TLS or on a non-loopback address (without a policy every caller may reveal everything); see deploy/policy/")
	}
	return nil
}
