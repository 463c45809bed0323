package config

import (
	"fmt"
	"os"
	"regexp"
)

// ReplicaConfig names this server among the replicas of one vault (key
// "replica"): every audit entry carries the id, so that trails from
// several replicas can be merged and told apart.
type ReplicaConfig struct {
	// ID: letters, digits, '.', '_' and '-', at most 64 (default: the
	// host name, or "tokenvault" if it has none).
	ID string `yaml:"id"`
}

// SetDefaults names the replica after the host.
func (c *ReplicaConfig) SetDefaults() {
	if c.ID == "" {
		c.ID = hostnameID()
	}
}

func hostnameID() string {
	h, err := os.Hostname()
	if err != nil || !replicaIDRE.MatchString(h) {
		return "tokenvault"
	}
	return h
}

var replicaIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate names the key.
func (c *ReplicaConfig) Validate() error {
	if !replicaIDRE.MatchString(c.ID) {
		return fmt.Errorf("replica.id: %q is not 1 to 64 letters, digits, '.', '_' or '-'", clipValue(c.ID))
	}
	return nil
}

// clipValue bounds a value quoted in an error.
func clipValue(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
