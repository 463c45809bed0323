package agekeyring_test

import (
	"context"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
)

// Wrap runs once per new subject; Unwrap once per subject-key cache miss
// (every request for a subject whose derived keys are not cached).
func BenchmarkWrapUnwrap(b *testing.B) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	kr, err := agekeyring.Create(filepath.Join(b.TempDir(), "keyring.age"), id.Recipient())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dek := make([]byte, 32)
	ad := make([]byte, 32) // the size of tokenvault's subject binding
	b.Run("wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kr.Wrap(ctx, dek, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
	wrapped, err := kr.Wrap(ctx, dek, ad)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unwrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d, err := kr.Unwrap(ctx, wrapped, ad)
			if err != nil {
				b.Fatal(err)
			}
			clear(d)
		}
	})
}
