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
// "vault:v<N>:<payload>" with the N it returns.
func FuzzParseWrapped(f *testing.F) {
	for _, seed := range []string{
		"vault:v1:AAAA", "vault:v12:AAAAAAA=", "vault:v3:AAAAAA==", "vault:v0:AAAA",
		"vault:v1:", "vault:v:AAAA", "vault:v1:AA=A", "vault:v999999999:AAAA", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseWrapped(b)
		if err != nil {
			if !errors.Is(err, kek.ErrInvalidWrapped) {
				t.Fatalf("error %v is not kek.ErrInvalidWrapped", err)
			}
			return
		}
		prefix := "vault:v" + strconv.Itoa(v) + ":"
		if v < 1 || !strings.HasPrefix(string(b), prefix) || len(b) == len(prefix) || len(b) > maxWrappedSize {
			t.Fatalf("accepted %q as version %d", b, v)
		}
	})
}
