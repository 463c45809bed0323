package format

import (
	"bytes"
	"fmt"
	"testing"
)

// TestIBANSpaceExhaustive checks spaceIBAN's count of the check digits by
// MOD 97 remainder against every token tokenIBAN can draw, on BBANs short
// enough to enumerate (real IBANs have at least 11 BBAN characters, too
// many for that; the counting does not depend on the length).
func TestIBANSpaceExhaustive(t *testing.T) {
	for _, c := range []struct{ cc, bban string }{
		{"DE", "123"}, {"GB", "1A"}, {"NO", "A9"}, {"FR", "0000"}, {"MT", "ZZ"},
	} {
		check := 98 - ibanMod97(c.cc+"00"+c.bban)
		v := fmt.Sprintf("%s%02d%s", c.cc, check, c.bban)
		base := 10
		if bytes.ContainsAny([]byte(c.bban), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			base = 26
		}
		for _, o := range []Options{{}, {ChecksumValid: true}} {
			t.Run(fmt.Sprintf("%s/%+v", v, o), func(t *testing.T) {
				draws := len(c.bban)
				if !o.ChecksumValid {
					draws++ // which of the wrong check-digit pairs
				}
				tokens := map[string]bool{}
				seq := make([]byte, draws)
				for {
					g := &rng{r: bytes.NewReader(seq)}
					tok := tokenIBAN(v, o, g)
					if g.err != nil {
						t.Fatal(g.err)
					}
					tokens[tok] = true
					i := len(seq) - 1
					for ; i >= 0; i-- {
						if seq[i]++; int(seq[i]) < base {
							break
						}
						seq[i] = 0
					}
					if i < 0 {
						break
					}
				}
				delete(tokens, v) // Token redraws the value itself
				if n := spaceIBAN(v, o); !n.IsInt64() || n.Int64() != int64(len(tokens)) {
					t.Fatalf("spaceIBAN = %v, tokenIBAN draws %d distinct tokens", n, len(tokens))
				}
			})
		}
	}
}
