package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/tokenvault/tokenvault/internal/config"
)

// TestApplyHeapLimit: the default and a configured limit are applied, 0
// applies none, and GOMEMLIMIT in the environment wins over both.
func TestApplyHeapLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	mib := func(n int) *int { return &n }
	for _, tc := range []struct {
		name string
		cfg  config.MemoryConfig
		env  map[string]string
		want int64
	}{
		{"default", config.MemoryConfig{}, nil, config.DefaultHeapLimitMiB << 20},
		{"configured", config.MemoryConfig{HeapLimitMiB: mib(600)}, nil, 600 << 20},
		{"none", config.MemoryConfig{HeapLimitMiB: mib(0)}, nil, math.MaxInt64},
		{"GOMEMLIMIT wins", config.MemoryConfig{HeapLimitMiB: mib(600)}, map[string]string{"GOMEMLIMIT": "1GiB"}, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64) // as at start without GOMEMLIMIT (or as GOMEMLIMIT left it)
			applyHeapLimit(tc.cfg, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Fatalf("heap limit %d, want %d", got, tc.want)
			}
		})
	}
}
