//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts of pooled paths are only asserted without it.

package audit_test

import (
	"path/filepath"
	"testing"
)

// A reveal's token hash allocates its string only (the HMAC state is
// pooled; EncodeToString allocated twice).
func TestTokenHashAllocations(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "a"), newKey(t), 10)
	defer l.Close()
	if n := testing.AllocsPerRun(100, func() { l.TokenHash("4111118306421111") }); n > 1 {
		t.Fatalf("TokenHash: %v allocations, want 1", n)
	}
}
