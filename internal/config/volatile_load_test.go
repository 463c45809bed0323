package config_test

import (
	"strings"
	"testing"
	"time"
)

// TestVolatileSection: the YAML section loads, defaults fill what it
// leaves out, and a bad value is refused naming its key.
func TestVolatileSection(t *testing.T) {
	cfg, err := load(t, "volatile:\n  ttl: 10m\n  reveals: 3\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := cfg.Volatile; v.TTL != 10*time.Minute || v.Reveals != 3 || v.MaxTokens != 100_000 || v.HolderID != "" {
		t.Fatalf("volatile = %+v", v)
	}
	if _, err := load(t, "volatile:\n  ttl: 48h\n", nil); err == nil || !strings.Contains(err.Error(), "volatile.ttl") {
		t.Fatalf("ttl over 24h: %v", err)
	}
	if _, err := load(t, "volatile:\n  max_token: 5\n", nil); err == nil || !strings.Contains(err.Error(), "volatile.max_token") {
		t.Fatalf("misspelt key: %v", err)
	}
}
