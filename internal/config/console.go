package config

import (
	"fmt"
	"net"
	"time"
)

// ConsoleConfig is the privacy console (internal/console), a web page for
// privacy officers and support staff served by the same binary on its own
// listener (config key "console"; README "Privacy console"). Off unless
// listen is set.
type ConsoleConfig struct {
	// Listen is the console's HTTP address; empty: off. A port alone
	// (":7380") listens on loopback only. It serves TLS with the gRPC
	// listener's certificate whenever auth.tls is set (and then accepts
	// client certificates from auth.tls.client_ca_file as sign-in); a
	// plaintext console on a non-loopback address needs
	// insecure_plaintext_nonloopback, as for gRPC.
	Listen string `yaml:"listen"`
	// IdleTimeout signs a console user out after this long without a
	// request (default 15m, at most 12h).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// RevealFor is how long a revealed value stays on the page before the
	// page hides it (default 20s, at most 10m).
	RevealFor time.Duration `yaml:"reveal_for"`
}

const maxRevealFor = 10 * time.Minute

// maxConsoleIdle bounds console.idle_timeout: a console session is a
// signed-in vault identity left in a browser.
const maxConsoleIdle = 12 * time.Hour

// Enabled reports whether the console is served.
func (c *ConsoleConfig) Enabled() bool { return c.Listen != "" }

// SetDefaults binds a port alone to loopback and sets the idle timeout.
func (c *ConsoleConfig) SetDefaults() {
	if host, port, err := net.SplitHostPort(c.Listen); err == nil && host == "" {
		// Go would listen on every interface; the console must be asked
		// for explicitly before it is reachable from the network.
		c.Listen = net.JoinHostPort("127.0.0.1", port)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 15 * time.Minute
	}
	if c.RevealFor == 0 {
		c.RevealFor = 20 * time.Second
	}
}

// validate checks the section; tls: the server serves TLS; plaintextOK:
// insecure_plaintext_nonloopback is set; policy: a policy file is set.
func (c *ConsoleConfig) validate(tls, plaintextOK, policy bool) error {
	if !c.Enabled() {
		return nil
	}
	host, err := splitListen(c.Listen)
	if err != nil {
		return fmt.Errorf("console.listen: %q is not host:port: %v", c.Listen, err)
	}
	if !policy && !isLoopback(host) {
		// Without a policy anyone who reaches the console signs in as
		// the anonymous dev-mode identity, which may do everything: as
		// for the gRPC listener, dev mode stays on loopback.
		return fmt.Errorf("console.listen: %q is not a loopback address and no policy is set (auth.policy_file): without one every visitor may reveal and erase", c.Listen)
	}
	if !tls && !plaintextOK && !isLoopback(host) {
		// Session cookies and revealed values would cross the network in
		// the clear.
		return fmt.Errorf("console.listen: %q is not a loopback address and auth.tls is not set (set insecure_plaintext_nonloopback to allow plaintext)", c.Listen)
	}
	if c.IdleTimeout < 0 || c.IdleTimeout > maxConsoleIdle {
		return fmt.Errorf("console.idle_timeout: must be between 0 and %v, not %v", maxConsoleIdle, c.IdleTimeout)
	}
	if c.RevealFor < 0 || c.RevealFor > maxRevealFor {
		return fmt.Errorf("console.reveal_for: must be between 0 and %v, not %v", maxRevealFor, c.RevealFor)
	}
	return nil
}
