package config_test

import (
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/config"
)

// TestLimitsConfig: the limits section's defaults, file keys, environment
// overrides and errors.
func TestLimitsConfig(t *testing.T) {
	cfg, err := load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.Tokenize != (config.RateConfig{FieldsPerSecond: 1000, Burst: 10_000}) ||
		cfg.Limits.DeterministicTokenize != (config.RateConfig{FieldsPerSecond: 10, Burst: 100}) {
		t.Fatalf("defaults: %+v", cfg.Limits)
	}
	cfg, err = load(t, "limits:\n  tokenize:\n    fields_per_second: -1\n  deterministic_tokenize:\n    burst: 20\n",
		map[string]string{"TOKENVAULT_LIMITS_DETERMINISTIC_TOKENIZE_FIELDS_PER_SECOND": "0.5"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.Tokenize.FieldsPerSecond != -1 || cfg.Limits.DeterministicTokenize != (config.RateConfig{FieldsPerSecond: 0.5, Burst: 20}) {
		t.Fatalf("overrides: %+v", cfg.Limits)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"limits:\n  deterministic_tokenize:\n    burst: -1\n", "limits.deterministic_tokenize.burst: must not be negative"},
		{"limits:\n  tokenize:\n    fields_per_second: .nan\n", "limits.tokenize.fields_per_second: not a number"},
		{"limits:\n  tokenize:\n    rate: 5\n", "limits.tokenize.rate: unknown key (line 3)"},
	} {
		if _, err := load(t, tc.yaml, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
