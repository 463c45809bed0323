package config

import (
	"errors"
	"fmt"
	"math"
)

// LimitsConfig is the "limits" section: how fast one caller identity may
// tokenize under a policy (dev mode has no identities to tell apart and is
// not limited). See README "Who may see what". Each limit is a token
// bucket; a call beyond it is refused with RESOURCE_EXHAUSTED and audited.
type LimitsConfig struct {
	// Tokenize counts every tokenized field (default 1000 a second, at
	// most 10,000 at once). It bounds how fast one identity can fill
	// token spaces and the store.
	Tokenize RateConfig `yaml:"tokenize"`
	// DeterministicTokenize counts deterministic fields, which also count
	// towards Tokenize (default 10 a second, at most 100 at once). Each one
	// can test a guess of a value whose token the caller holds.
	DeterministicTokenize RateConfig `yaml:"deterministic_tokenize"`
}

// RateConfig is one token bucket.
type RateConfig struct {
	// FieldsPerSecond: the sustained rate; 0: the default; negative: no
	// limit.
	FieldsPerSecond float64 `yaml:"fields_per_second"`
	// Burst: the most fields at once (and so in one call); 0: the default.
	Burst int `yaml:"burst"`
}

// Defaults. A deterministic tokenize that finds the value's token answers
// a guess, so its rate is low: at 10 a second a PAN's ~10⁵ candidates
// (first 6 and last 4 digits known) take about three hours instead of
// seconds. An SSN with a few digits known is ~10³ guesses (the security
// review found one in 990): minutes even so. The defence against such
// oracles is the tokenize-deterministic permission; the limit slows them
// down and puts the attempt in the audit log. The tokenize default is far
// above what most services send and far below what one server can store.
var (
	defaultTokenize      = RateConfig{FieldsPerSecond: 1000, Burst: 10_000}
	defaultDeterministic = RateConfig{FieldsPerSecond: 10, Burst: 100}
)

// SetDefaults fills unset fields.
func (c *LimitsConfig) SetDefaults() {
	c.Tokenize.setDefaults(defaultTokenize)
	c.DeterministicTokenize.setDefaults(defaultDeterministic)
}

func (r *RateConfig) setDefaults(d RateConfig) {
	if r.FieldsPerSecond == 0 {
		r.FieldsPerSecond = d.FieldsPerSecond
	}
	if r.Burst == 0 {
		r.Burst = d.Burst
	}
}

// Validate names the offending key.
func (c *LimitsConfig) Validate() error {
	return errors.Join(c.Tokenize.validate("limits.tokenize"), c.DeterministicTokenize.validate("limits.deterministic_tokenize"))
}

func (r RateConfig) validate(key string) error {
	switch {
	case math.IsNaN(r.FieldsPerSecond) || math.IsInf(r.FieldsPerSecond, 0):
		return fmt.Errorf("%s.fields_per_second: not a number", key)
	case r.Burst < 0:
		return fmt.Errorf("%s.burst: must not be negative", key)
	}
	return nil
}
