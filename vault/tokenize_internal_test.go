package vault

import (
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/vault/format"
)

// TestExhaustedReasonEveryKind: every kind says which values share its
// tokens, each in its own words.
func TestExhaustedReasonEveryKind(t *testing.T) {
	seen := map[string]format.Kind{}
	for _, k := range format.Kinds() {
		who := tokenSharers[k]
		if who == "" {
			t.Fatalf("kind %v: no description of the values that share its tokens", k)
		}
		if other, ok := seen[who]; ok {
			t.Fatalf("kinds %v and %v share the description %q", k, other, who)
		}
		seen[who] = k
		if r := exhaustedReason(k); !strings.Contains(r, who) {
			t.Fatalf("kind %v: reason %q", k, r)
		}
	}
	if len(tokenSharers) != len(format.Kinds()) {
		t.Fatalf("%d descriptions for %d kinds", len(tokenSharers), len(format.Kinds()))
	}
}
