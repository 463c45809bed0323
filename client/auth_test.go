package client

import (
	"context"
	"strings"
	"testing"
)

// The API key is never handed to a plaintext connection to a non-loopback
// address (the server would not be on loopback, so the key would cross
// the network in the clear).
func TestAPIKeyNotSentInPlaintext(t *testing.T) {
	k := apiKey("tvk_secret")
	for _, c := range []struct {
		uri string
		ok  bool
	}{
		{"https://127.0.0.1:7300/tokenvault.v1.TokenVault", true},
		{"https://[::1]:7300/tokenvault.v1.TokenVault", true},
		{"https://localhost:7300/tokenvault.v1.TokenVault", true},
		{"https://192.0.2.1:7300/tokenvault.v1.TokenVault", false},
		{"https://vault.example/tokenvault.v1.TokenVault", false},
	} {
		md, err := k.GetRequestMetadata(context.Background(), c.uri)
		if c.ok != (err == nil) {
			t.Errorf("%s: %v", c.uri, err)
		}
		if err != nil && strings.Contains(err.Error(), "tvk_secret") {
			t.Errorf("error leaks the key: %v", err)
		}
		if c.ok && md["authorization"] != "Bearer tvk_secret" {
			t.Errorf("%s: metadata %v", c.uri, md)
		}
	}
}
