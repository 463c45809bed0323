package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// RightsConfig is the "rights" section: data-subject rights, erasure
// receipts and the erasure ledger.
type RightsConfig struct {
	// SigningKeyFile is the Ed25519 key that signs erasure receipts,
	// created on first start (default: receipt-signing.pem beside the
	// keyring).
	SigningKeyFile string `yaml:"signing_key_file"`
	// LedgerKeyFile keys the erasure ledger's hashes of subject ids,
	// created on first start (default: ledger.key beside the keyring).
	// `tokenvault restore` needs it.
	LedgerKeyFile string `yaml:"ledger_key_file"`
	// RotationInterval is how often the KEK is rotated and retired (R in
	// the README). Receipts state erased_at + R + backup retention as the
	// time by which every backup copy is undecryptable (default 30 days).
	RotationInterval time.Duration `yaml:"rotation_interval"`
	// PurgeInterval is how often expired tokens are purged (default 1m).
	PurgeInterval time.Duration `yaml:"purge_interval"`
	// Retention is the default expiry of new tokens per kind name (e.g.
	// pan: 2160h); kinds not listed do not expire unless a request says so.
	Retention map[string]time.Duration `yaml:"retention"`

	keysDir string // from the keyring path; see Config.SetDefaults
}

// SetDefaults fills unset fields.
func (c *RightsConfig) SetDefaults() {
	if c.keysDir == "" {
		c.keysDir = "tokenvault-keys"
	}
	if c.SigningKeyFile == "" {
		c.SigningKeyFile = filepath.Join(c.keysDir, "receipt-signing.pem")
	}
	if c.LedgerKeyFile == "" {
		c.LedgerKeyFile = filepath.Join(c.keysDir, "ledger.key")
	}
	if c.RotationInterval == 0 {
		c.RotationInterval = 30 * 24 * time.Hour
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = time.Minute
	}
}

// Validate reports every problem, each naming its key.
func (c *RightsConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case c.SigningKeyFile == "":
		bad("rights.signing_key_file: must not be empty")
	case c.LedgerKeyFile == "":
		bad("rights.ledger_key_file: must not be empty")
	case c.SigningKeyFile == c.LedgerKeyFile:
		bad("rights.ledger_key_file: must differ from rights.signing_key_file")
	}
	if c.RotationInterval <= 0 {
		bad("rights.rotation_interval: must be positive")
	}
	if c.PurgeInterval <= 0 {
		bad("rights.purge_interval: must be positive")
	}
	names := make([]string, 0, len(c.Retention))
	for name := range c.Retention {
		names = append(names, name)
	}
	slices.Sort(names) // a stable order
	for _, name := range names {
		if _, err := format.ParseKind(name); err != nil {
			bad("rights.retention.%s: unknown kind", name)
		} else if d := c.Retention[name]; d <= 0 || d > vault.MaxTTL {
			bad("rights.retention.%s: must be positive and at most %v", name, vault.MaxTTL)
		}
	}
	return errors.Join(errs...)
}
