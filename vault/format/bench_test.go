package format_test

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"testing"

	"github.com/tokenvault/tokenvault/vault/format"
)

func benchValues() map[format.Kind]string {
	r := mrand.New(mrand.NewPCG(3, 3))
	vs := make(map[format.Kind]string)
	for _, k := range format.Kinds() {
		vs[k] = generators[k](r)
	}
	return vs
}

func BenchmarkToken(b *testing.B) {
	vs := benchValues()
	for _, k := range format.Kinds() {
		b.Run(k.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := format.Token(k, vs[k], format.Options{}, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNormalize(b *testing.B) {
	vs := benchValues()
	for _, k := range format.Kinds() {
		b.Run(k.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := format.Normalize(k, vs[k]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTokenSpace(b *testing.B) {
	vs := benchValues()
	vs[format.IBAN] = "MT84MALT011000012345MTLCAST001S" // the longest BBAN of the generators
	for _, k := range format.Kinds() {
		b.Run(k.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := format.TokenSpace(k, vs[k], format.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
