package config

import (
	"fmt"
)

// ProfilingConfig exposes Go's pprof profiles over HTTP, to find where the
// time goes under load (see BENCHMARKS.md). Off by default.
type ProfilingConfig struct {
	// Listen is the pprof HTTP address, e.g. "127.0.0.1:6060"; empty
	// disables it. Loopback only: profiles and goroutine dumps describe the
	// process's internals and have no authentication.
	Listen string `yaml:"listen"`
}

// SetDefaults leaves profiling off.
func (c *ProfilingConfig) SetDefaults() {}

// Validate names the offending key.
func (c *ProfilingConfig) Validate() error {
	if c.Listen == "" {
		return nil
	}
	host, err := splitListen(c.Listen)
	if err != nil {
		return fmt.Errorf("profiling.listen: %q is not host:port: %w", c.Listen, err)
	}
	if !isLoopback(host) {
		return fmt.Errorf("profiling.listen: %q is not a loopback address (pprof has no authentication)", c.Listen)
	}
	return nil
}
