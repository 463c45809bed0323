package hcvault

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/kek"
)

// FuzzParseWrapped: parseWrapped never panics, rejects with
// kek.ErrInvalidWrapped only, and what it accepts is exactly
// "[ad1:]vault:v<N>:<payload>" with the N it returns, bound exactly when
// the prefix is there, and the transit ciphertext after the prefix.
func FuzzParseWrapped(f *testing.F) {
	for _, seed := range []string{
		"vault:v1:AAAA", "vault:v12:AAAAAAA=", "vault:v3:AAAAAA==", "vault:v0:AAAA",
		"vault:v1:", "vault:v:AAAA", "vault:v1:AA=A", "vault:v999999999:AAAA", "",
		"ad1:vault:v1:AAAA", "ad1:", "ad1:ad1:vault:v1:AAAA", "ad2:vault:v1:AAAA",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, ct, err := parseWrapped(b)
		if err != nil {
			if !errors.Is(err, kek.ErrInvalidWrapped) {
				t.Fatalf("error %v is not kek.ErrInvalidWrapped", err)
			}
			return
		}
		v := info.Version
		rest, hasPrefix := strings.CutPrefix(string(b), boundPrefix)
		prefix := "vault:v" + strconv.Itoa(v) + ":"
		if v < 1 || hasPrefix != info.Bound || ct != rest || !strings.HasPrefix(ct, prefix) || len(ct) == len(prefix) || len(b) > maxWrappedSize {
			t.Fatalf("accepted %q as version %d (bound %v, ciphertext %q)", b, v, info.Bound, ct)
		}
	})
}
