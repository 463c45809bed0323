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
func (c MemoryConfig) HeapLimit() int64 { return mibBytes(c.HeapLimitMiB, DefaultHeapLimitMiB) }

// Validate names the key.
func (c MemoryConfig) Validate() error {
	return checkMiB("memory.heap_limit_mib", c.HeapLimitMiB, minHeapLimitMiB, "none")
}

// The limits in MiB (memory.heap_limit_mib, store.badger.mapped_limit_mib)
// are optional sizes: nil takes the default, 0 turns the limit off, and
// anything else lies between a floor and maxLimitMiB.

// maxLimitMiB bounds a limit in MiB (16 TiB: more is a typo).
const maxLimitMiB = 1 << 24

// mibBytes is an optional size in bytes: def MiB when m is nil.
func mibBytes(m *int, def int) int64 {
	if m == nil {
		return int64(def) << 20
	}
	return int64(*m) << 20
}

// checkMiB refuses an optional size outside 0 (off, in the words of
// zero) and [lo, maxLimitMiB], naming its key.
func checkMiB(key string, m *int, lo int, zero string) error {
	if m != nil && *m != 0 && (*m < lo || *m > maxLimitMiB) {
		return fmt.Errorf("%s: must be 0 (%s) or between %d and %d, not %d", key, zero, lo, maxLimitMiB, *m)
	}
	return nil
}
