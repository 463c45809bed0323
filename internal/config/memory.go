package config

import "fmt"

// MemoryConfig is the "memory" section: the Go heap's soft limit.
type MemoryConfig struct {
	// HeapLimitMiB is the soft limit of the Go heap
	// (runtime/debug.SetMemoryLimit; default 450, 0: none). The
	// GOMEMLIMIT environment variable, if set, wins: Go applies it at
	// start, and serve then leaves it. See README "Memory".
	HeapLimitMiB *int `yaml:"heap_limit_mib"`
}

// DefaultHeapLimitMiB is memory.heap_limit_mib's default: what bulk
// loads at 10 M tokens needed without measurable GC cost, so that RSS
// stays under 1 GiB with the mapped-file limit (BENCHMARKS.md, "Memory").
const DefaultHeapLimitMiB = 450

// minHeapLimitMiB: below this, the heap badger needs (its memtables alone
// reach 192 MiB) would keep the GC running all the time.
const minHeapLimitMiB = 128

// HeapLimit is the limit in bytes (0: none).
func (c MemoryConfig) HeapLimit() int64 {
	if c.HeapLimitMiB == nil {
		return DefaultHeapLimitMiB << 20
	}
	return int64(*c.HeapLimitMiB) << 20
}

// Validate names the key.
func (c MemoryConfig) Validate() error {
	if m := c.HeapLimitMiB; m != nil && *m != 0 && (*m < minHeapLimitMiB || *m > 1<<24) {
		return fmt.Errorf("memory.heap_limit_mib: must be 0 (none) or between %d and %d, not %d", minHeapLimitMiB, 1<<24, *m)
	}
	return nil
}
