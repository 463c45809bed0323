package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// VolatileConfig is the "volatile" section: card security codes, whose
// tokens live only in this process's memory (README, "Card security codes
// (volatile tokens)"). A restart drops them all.
type VolatileConfig struct {
	// TTL is a token's lifetime when the call asks for none (default 1h,
	// at most 24h).
	TTL time.Duration `yaml:"ttl"`
	// MaxTokens caps the live volatile tokens of this process (default
	// 100,000); a tokenize beyond it gets RESOURCE_EXHAUSTED. Each holds
	// well under 300 bytes.
	MaxTokens int `yaml:"max_tokens"`
	// Reveals is how often a token may be revealed when the call does not
	// say (default 1: burned on first reveal; at most 100).
	Reveals int `yaml:"reveals"`
	// HolderID names this process in its tokens: 8 characters of a-z and
	// 2-7. Empty (the default): random at every start, so that a token
	// issued before a restart is recognisably gone.
	HolderID string `yaml:"holder_id"`
}

// SetDefaults fills unset fields.
func (c *VolatileConfig) SetDefaults() {
	if c.TTL == 0 {
		c.TTL = vault.DefaultVolatileTTL
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = vault.DefaultVolatileMaxTokens
	}
	if c.Reveals == 0 {
		c.Reveals = vault.DefaultVolatileReveals
	}
}

// Validate names the offending key.
func (c *VolatileConfig) Validate() error {
	var errs []error
	if c.TTL <= 0 || c.TTL > vault.MaxVolatileTTL {
		errs = append(errs, fmt.Errorf("volatile.ttl: must be more than 0 and at most %v", vault.MaxVolatileTTL))
	}
	if c.MaxTokens <= 0 {
		errs = append(errs, errors.New("volatile.max_tokens: must be positive"))
	}
	if c.Reveals < 1 || c.Reveals > vault.MaxVolatileReveals {
		errs = append(errs, fmt.Errorf("volatile.reveals: must be between 1 and %d", vault.MaxVolatileReveals))
	}
	if c.HolderID != "" && !format.ValidHolderID(c.HolderID) {
		errs = append(errs, fmt.Errorf("volatile.holder_id: must be %d characters of a-z and 2-7", format.HolderIDLen))
	}
	return errors.Join(errs...)
}

// Options are the vault's options for this section.
func (c *VolatileConfig) Options() vault.VolatileOptions {
	return vault.VolatileOptions{TTL: c.TTL, MaxTokens: c.MaxTokens, Reveals: c.Reveals, HolderID: c.HolderID}
}
