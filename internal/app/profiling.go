package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
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
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("profiling.listen: %q is not host:port: %w", c.Listen, err)
	}
	if !isLoopback(host) {
		return fmt.Errorf("profiling.listen: %q is not a loopback address (pprof has no authentication)", c.Listen)
	}
	return nil
}

// startProfiling serves pprof on cfg.Listen; stop shuts it down.
func startProfiling(cfg ProfilingConfig, log *slog.Logger) (stop func(), err error) {
	if cfg.Listen == "" {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("profiling.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server stopped", "err", err)
		}
	}()
	log.Info("pprof serving", "addr", lis.Addr().String())
	return func() { srv.Close() }, nil
}
