package aead_test

import (
	"fmt"
	"testing"

	"github.com/tokenvault/tokenvault/crypto/aead"
)

// The per-value crypto of every tokenize, detokenize, encrypt and decrypt:
// regressions here show up directly in tvbench's figures.
func BenchmarkSealOpen(b *testing.B) {
	k, err := aead.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	aad := []byte("tokenvault/record/v1 0123456789abcdef subject-42")
	for _, size := range []int{16, 256, 64 << 10} {
		plain := make([]byte, size)
		b.Run(fmt.Sprintf("seal-%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			dst := make([]byte, 0, size+aead.Overhead)
			for b.Loop() {
				if _, err := k.Seal(dst[:0], plain, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
		sealed, err := k.Seal(nil, plain, aad)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("open-%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			dst := make([]byte, 0, size)
			for b.Loop() {
				if _, err := k.Open(dst[:0], sealed, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Derive runs three times per cold subject key (cache miss); MAC once per
// deterministic token.
func BenchmarkDeriveMAC(b *testing.B) {
	k, err := aead.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("derive", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d, err := k.Derive("tokenvault/v1/record")
			if err != nil {
				b.Fatal(err)
			}
			d.Zero()
		}
	})
	b.Run("mac", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.MAC([]byte{1}, []byte("4111111111111111")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
