package config

import (
	"strings"
	"testing"
	"time"
)

func TestConsoleConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		c          ConsoleConfig
		tls, plain bool
		noPolicy   bool   // dev mode: no policy file
		want       string // error substring; "" valid
		listen     string // after defaults
	}{
		{name: "off", c: ConsoleConfig{}},
		{name: "port alone is loopback", c: ConsoleConfig{Listen: ":7380"}, listen: "127.0.0.1:7380"},
		{name: "loopback", c: ConsoleConfig{Listen: "[::1]:7380"}, listen: "[::1]:7380"},
		{name: "plaintext non-loopback", c: ConsoleConfig{Listen: "0.0.0.0:7380"}, want: "console.listen"},
		{name: "non-loopback with TLS", c: ConsoleConfig{Listen: "0.0.0.0:7380"}, tls: true},
		{name: "non-loopback allowed plaintext", c: ConsoleConfig{Listen: "10.0.0.1:7380"}, plain: true},
		{name: "non-loopback in dev mode", c: ConsoleConfig{Listen: "10.0.0.1:7380"}, plain: true, tls: true, noPolicy: true, want: "no policy"},
		{name: "loopback in dev mode", c: ConsoleConfig{Listen: ":7380"}, noPolicy: true},
		{name: "not host:port", c: ConsoleConfig{Listen: "7380"}, want: "console.listen"},
		{name: "idle too long", c: ConsoleConfig{Listen: ":1", IdleTimeout: 13 * time.Hour}, want: "console.idle_timeout"},
		{name: "idle negative", c: ConsoleConfig{Listen: ":1", IdleTimeout: -time.Second}, want: "console.idle_timeout"},
		{name: "reveal too long", c: ConsoleConfig{Listen: ":1", RevealFor: time.Hour}, want: "console.reveal_for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.SetDefaults()
			if tc.listen != "" && c.Listen != tc.listen {
				t.Errorf("listen %q, want %q", c.Listen, tc.listen)
			}
			err := c.validate(tc.tls, tc.plain, !tc.noPolicy)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
			if tc.c.IdleTimeout == 0 && c.IdleTimeout != 15*time.Minute || tc.c.RevealFor == 0 && c.RevealFor != 20*time.Second {
				t.Errorf("defaults: idle %v reveal %v", c.IdleTimeout, c.RevealFor)
			}
		})
	}
}

// TestConsoleFromEnv: the section is read like every other (file and
// environment), and Config.Validate checks it.
func TestConsoleFromEnv(t *testing.T) {
	env := map[string]string{"TOKENVAULT_CONSOLE_LISTEN": "0.0.0.0:7380"}
	cfg, err := Load("", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Console.Listen != "0.0.0.0:7380" {
		t.Fatalf("console.listen from the environment: %q", cfg.Console.Listen)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "console.listen") {
		t.Fatalf("plaintext console on every interface accepted: %v", err)
	}
}
