package config_test

import (
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/config"
)

// TestMemoryConfig: memory.heap_limit_mib's default, file and environment
// values, and bad values named by their key.
func TestMemoryConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		env  map[string]string
		want int64
	}{
		{"", nil, config.DefaultHeapLimitMiB << 20},
		{"memory:\n  heap_limit_mib: 0\n", nil, 0},
		{"memory:\n  heap_limit_mib: 900\n", nil, 900 << 20},
		{"", map[string]string{"TOKENVAULT_MEMORY_HEAP_LIMIT_MIB": "300"}, 300 << 20},
	} {
		cfg, err := load(t, tc.yaml, tc.env)
		if err != nil || cfg.Memory.HeapLimit() != tc.want {
			t.Errorf("%q %v: heap limit %d, %v; want %d", tc.yaml, tc.env, cfg.Memory.HeapLimit(), err, tc.want)
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"memory:\n  heap_limit_mib: 100\n", "memory.heap_limit_mib: must be 0 (none) or between 128 and"},
		{"memory:\n  heap_limit_mib: -5\n", "memory.heap_limit_mib: must be 0 (none) or between 128 and"},
		{"memory:\n  heap_limit: 500\n", "memory.heap_limit: unknown key"},
	} {
		if _, err := load(t, tc.yaml, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
