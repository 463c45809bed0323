package config

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenvault/tokenvault/vault/format"
)

func TestVolatileConfig(t *testing.T) {
	var c VolatileConfig
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.TTL != time.Hour || c.Reveals != 1 || c.MaxTokens != 100_000 {
		t.Fatalf("defaults %+v: %v", c, err)
	}
	for _, bad := range []struct {
		c   VolatileConfig
		key string
	}{
		{VolatileConfig{TTL: 25 * time.Hour, MaxTokens: 1, Reveals: 1}, "volatile.ttl"},
		{VolatileConfig{TTL: -time.Second, MaxTokens: 1, Reveals: 1}, "volatile.ttl"},
		{VolatileConfig{TTL: time.Hour, MaxTokens: -1, Reveals: 1}, "volatile.max_tokens"},
		{VolatileConfig{TTL: time.Hour, MaxTokens: 1, Reveals: 101}, "volatile.reveals"},
		{VolatileConfig{TTL: time.Hour, MaxTokens: 1, Reveals: 1, HolderID: "NOTVALID"}, "volatile.holder_id"},
	} {
		if err := bad.c.Validate(); err == nil || !strings.HasPrefix(err.Error(), bad.key+":") {
			t.Errorf("%+v: %v, want an error naming %s", bad.c, err, bad.key)
		}
	}
}

// TestHolderIDOf: derived holder ids are valid, stable and differ by
// replica.
func TestHolderIDOf(t *testing.T) {
	a, b := HolderIDOf("replica-a"), HolderIDOf("replica-b")
	if !format.ValidHolderID(a) || !format.ValidHolderID(b) || a == b || a != HolderIDOf("replica-a") {
		t.Fatalf("holder ids %q %q", a, b)
	}
}

// TestForwardNeedsIdentity: under a policy the holders must be able to
// tell this replica from any caller.
func TestForwardNeedsIdentity(t *testing.T) {
	c := VolatileConfig{Peers: []VolatilePeer{{ReplicaID: "b", Address: "127.0.0.1:1"}}}
	c.SetDefaults()
	if err := c.validatePeers("a", true, false); err == nil || !strings.Contains(err.Error(), "volatile.forward:") {
		t.Fatalf("no credentials under a policy: %v", err)
	}
	if err := c.validatePeers("a", false, false); err != nil {
		t.Fatalf("dev mode: %v", err)
	}
	c.Forward.APIKeyFile = "key"
	if err := c.validatePeers("a", true, false); err != nil {
		t.Fatalf("with an API key: %v", err)
	}
}
