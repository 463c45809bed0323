package config

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// VolatileConfig is the "volatile" section: card security codes, whose
// tokens live only in this process's memory (README, "Card security codes
// (volatile tokens)"). A restart drops them all.
type VolatileConfig struct {
	// TTL is a token's lifetime when the call asks for none (default 1h,
	// at most 24h).
	TTL time.Duration `yaml:"ttl"`
	// MaxTokens caps the live volatile tokens of this process (default
	// 100,000); a tokenize beyond it gets RESOURCE_EXHAUSTED. Each holds
	// well under 300 bytes.
	MaxTokens int `yaml:"max_tokens"`
	// Reveals is how often a token may be revealed when the call does not
	// say (default 1: burned on first reveal; at most 100).
	Reveals int `yaml:"reveals"`
	// HolderID names this process in its tokens: 8 characters of a-z and
	// 2-7. Empty (the default): random at every start, so that a token
	// issued before a restart is recognisably gone.
	HolderID string `yaml:"holder_id"`
	// Peers are the replicas of this vault (sharing its PostgreSQL store),
	// by replica.id and gRPC address; the same list can go to every
	// replica (each skips its own entry). With peers, a replica's holder
	// id is derived from its replica.id (HolderIDOf), and a reveal of
	// another replica's token is forwarded to it (README, "Card security
	// codes (volatile tokens)").
	Peers []VolatilePeer `yaml:"peers"`
	// Forward: how this replica calls its peers.
	Forward VolatileForwardConfig `yaml:"forward"`
}

// VolatilePeer is one replica of volatile.peers.
type VolatilePeer struct {
	ReplicaID string `yaml:"replica_id"` // its replica.id
	Address   string `yaml:"address"`    // host:port of its gRPC listener
}

// VolatileForwardConfig is volatile.forward: the replica-to-replica
// channel of forwarded reveals. The holder admits a forward only from an
// identity its policy allows volatile-forward, so this replica needs an
// identity: a client certificate, or an API key.
type VolatileForwardConfig struct {
	// Timeout caps one forwarded reveal (default 5s); the caller's
	// deadline, if sooner, wins.
	Timeout time.Duration `yaml:"timeout"`
	// CAFile verifies the peers' server certificates (TLS). Empty:
	// plaintext, allowed only to loopback peers (unless
	// --insecure-plaintext-nonloopback).
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the peers' certificates must carry (default:
	// the host of each peer's address).
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile: the client certificate this replica presents
	// to its peers.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// APIKeyFile holds an API key (tvk_…) this replica sends to its peers
	// instead of, or besides, a certificate. A file, so that the key stays
	// out of the config.
	APIKeyFile string `yaml:"api_key_file"`
}

// DefaultForwardTimeout is volatile.forward.timeout's default.
const DefaultForwardTimeout = 5 * time.Second

// HolderIDOf is the holder id of the replica named replicaID when
// volatile.peers is set: 40 bits of SHA-256 over a label and the id, in
// the token's alphabet (a-z2-7). Every replica computes every peer's, so a
// static list of replica ids and addresses is all they share. Unlike the
// random default, it survives a restart: a token issued before a restart
// reaches the restarted holder, which answers NOT_FOUND (a restart drops
// its codes).
func HolderIDOf(replicaID string) string {
	sum := sha256.Sum256([]byte("tokenvault/v1/volatile-holder\x00" + replicaID))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:5]))
}

// SetDefaults fills unset fields.
func (c *VolatileConfig) SetDefaults() {
	if c.TTL == 0 {
		c.TTL = vault.DefaultVolatileTTL
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = vault.DefaultVolatileMaxTokens
	}
	if c.Reveals == 0 {
		c.Reveals = vault.DefaultVolatileReveals
	}
	if c.Forward.Timeout == 0 {
		c.Forward.Timeout = DefaultForwardTimeout
	}
}

// Validate names the offending key.
func (c *VolatileConfig) Validate() error {
	var errs []error
	if c.TTL <= 0 || c.TTL > vault.MaxVolatileTTL {
		errs = append(errs, fmt.Errorf("volatile.ttl: must be more than 0 and at most %v", vault.MaxVolatileTTL))
	}
	if c.MaxTokens <= 0 {
		errs = append(errs, errors.New("volatile.max_tokens: must be positive"))
	}
	if c.Reveals < 1 || c.Reveals > vault.MaxVolatileReveals {
		errs = append(errs, fmt.Errorf("volatile.reveals: must be between 1 and %d", vault.MaxVolatileReveals))
	}
	if c.HolderID != "" && !format.ValidHolderID(c.HolderID) {
		errs = append(errs, fmt.Errorf("volatile.holder_id: must be %d characters of a-z and 2-7", format.HolderIDLen))
	}
	return errors.Join(errs...)
}

// validatePeers checks volatile.peers and volatile.forward against this
// replica's id, whether a policy is in force and whether plaintext may
// leave loopback.
func (c *VolatileConfig) validatePeers(replicaID string, policy, allowPlaintext bool) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	f := c.Forward
	if f.Timeout < 0 {
		bad("volatile.forward.timeout: must not be negative")
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		bad("volatile.forward.cert_file, volatile.forward.key_file: give both or neither")
	}
	if f.CertFile != "" && f.CAFile == "" {
		bad("volatile.forward.ca_file: required with a client certificate (cert_file): certificates go over TLS only")
	}
	if len(c.Peers) == 0 {
		return errors.Join(errs...)
	}
	if c.HolderID != "" {
		bad("volatile.holder_id: leave it empty with volatile.peers (each replica's holder id is derived from its replica.id)")
	}
	if policy && f.CertFile == "" && f.APIKeyFile == "" {
		bad("volatile.forward: a client certificate (cert_file, key_file) or api_key_file is required with volatile.peers: the holders' policy admits forwards only from identities allowed volatile-forward")
	}
	ids, holders := map[string]bool{}, map[string]string{HolderIDOf(replicaID): replicaID}
	for i, p := range c.Peers {
		key := fmt.Sprintf("volatile.peers[%d]", i)
		if !replicaIDRE.MatchString(p.ReplicaID) {
			bad("%s.replica_id: %q is not 1 to 64 letters, digits, '.', '_' or '-'", key, clipValue(p.ReplicaID))
			continue
		}
		if ids[p.ReplicaID] {
			bad("%s.replica_id: %q is listed twice", key, p.ReplicaID)
			continue
		}
		ids[p.ReplicaID] = true
		if p.ReplicaID == replicaID {
			continue // this replica: its address is not needed
		}
		host, err := splitListen(p.Address)
		switch {
		case err != nil || host == "":
			bad("%s.address: %q is not host:port", key, clipValue(p.Address))
		case f.CAFile == "" && !allowPlaintext && !isLoopback(host):
			bad("%s.address: plaintext to non-loopback %q; set volatile.forward.ca_file (TLS)", key, clipValue(p.Address))
		}
		h := HolderIDOf(p.ReplicaID)
		if other, taken := holders[h]; taken {
			bad("%s.replica_id: %q derives the same holder id as %q; rename one", key, p.ReplicaID, other)
		}
		holders[h] = p.ReplicaID
	}
	return errors.Join(errs...)
}

// Options are the vault's options for this section.
func (c *VolatileConfig) Options() vault.VolatileOptions {
	return vault.VolatileOptions{TTL: c.TTL, MaxTokens: c.MaxTokens, Reveals: c.Reveals, HolderID: c.HolderID}
}
