package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ConsentConfig is the "consent" section: which purposes rest on consent
// when there is no policy file (dev mode). With a policy file the policy's
// purposes map declares them (README, "Consent per purpose"), and this
// list must be empty: two declarations could disagree.
type ConsentConfig struct {
	// Purposes rest on consent (e.g. [marketing, personalisation]):
	// reveals for them need the subject's consent. Default: none.
	Purposes []string `yaml:"purposes"`
}

// Validate checks the purposes (printable, no white space at either end:
// reveals trim their purpose, so such an entry would never match).
func (c *ConsentConfig) Validate(policyFile string) error {
	var errs []error
	if len(c.Purposes) > 0 && policyFile != "" {
		errs = append(errs, errors.New("consent.purposes: only without a policy file (declare them in the policy's purposes instead)"))
	}
	for i, p := range c.Purposes {
		if p == "" || len(p) > 256 || strings.TrimSpace(p) != p || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("consent.purposes[%d]: must be 1 to 256 printable bytes without white space at either end", i))
		}
	}
	return errors.Join(errs...)
}

// ErasuresConfig is the "erasures" section: erasure events for
// downstream consumers (README, "Erasure notices").
type ErasuresConfig struct {
	// EventRetention bounds how long an erasure event keeps the subject
	// id for consumers that have not acknowledged it (default 720h, 30
	// days). After it, only the keyed hash remains.
	EventRetention time.Duration `yaml:"event_retention"`
}

// DefaultEventRetention is erasures.event_retention's default.
const DefaultEventRetention = 30 * 24 * time.Hour

// SetDefaults fills unset fields.
func (c *ErasuresConfig) SetDefaults() {
	if c.EventRetention == 0 {
		c.EventRetention = DefaultEventRetention
	}
}

// Validate checks the retention (at least an hour: the server trims
// hourly; at most a year: the id must not be kept indefinitely).
func (c *ErasuresConfig) Validate() error {
	if c.EventRetention < time.Hour || c.EventRetention > 366*24*time.Hour {
		return fmt.Errorf("erasures.event_retention: %v out of range (1h to 8784h)", c.EventRetention)
	}
	return nil
}
