package config

import (
	"strings"
	"testing"
	"time"
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
