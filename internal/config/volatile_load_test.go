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

// TestVolatilePeers: the peers list loads, and every mistake is refused
// naming its key.
func TestVolatilePeers(t *testing.T) {
	const ok = "replica:\n  id: a\nvolatile:\n  peers:\n    - {replica_id: a, address: \"127.0.0.1:7001\"}\n    - {replica_id: b, address: \"127.0.0.1:7002\"}\n"
	cfg, err := load(t, ok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := cfg.Volatile; len(v.Peers) != 2 || v.Peers[1].ReplicaID != "b" || v.Forward.Timeout != 5*time.Second {
		t.Fatalf("volatile = %+v", v)
	}
	for _, bad := range []struct{ yaml, key string }{
		{"volatile:\n  peers:\n    - {replica_id: \"b c\", address: \"127.0.0.1:1\"}\n", "volatile.peers[0].replica_id"},
		{"volatile:\n  peers:\n    - {replica_id: b, address: \"127.0.0.1:1\"}\n    - {replica_id: b, address: \"127.0.0.1:2\"}\n", "volatile.peers[1].replica_id"},
		{"volatile:\n  peers:\n    - {replica_id: b, address: nohost}\n", "volatile.peers[0].address"},
		{"volatile:\n  peers:\n    - {replica_id: b, address: \"db.example:7001\"}\n", "volatile.peers[0].address"},
		{"volatile:\n  holder_id: abcdefgh\n  peers:\n    - {replica_id: b, address: \"127.0.0.1:1\"}\n", "volatile.holder_id"},
		{"volatile:\n  forward:\n    cert_file: c.pem\n", "volatile.forward.cert_file"},
		{"volatile:\n  forward:\n    cert_file: c.pem\n    key_file: k.pem\n", "volatile.forward.ca_file"},
		{"volatile:\n  forward:\n    timeout: -1s\n", "volatile.forward.timeout"},
		{"volatile:\n  peers:\n    - {replica_id: b, adress: \"127.0.0.1:1\"}\n", "volatile.peers[0].adress"},
	} {
		if _, err := load(t, bad.yaml, nil); err == nil || !strings.Contains(err.Error(), bad.key) {
			t.Errorf("%q: %v, want an error naming %s", bad.yaml, err, bad.key)
		}
	}
}
