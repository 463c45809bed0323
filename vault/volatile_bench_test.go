package vault_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// BenchmarkVolatileTokenize: one security code per call, over 1,000
// subjects whose keys are cached after the first round. Nothing is
// written but the subject keys (the first round), so this is the
// in-memory path: token draw, AES-GCM seal, heap push.
func BenchmarkVolatileTokenize(b *testing.B) {
	f := newFixtureWith(b, vault.Options{Logger: slog.New(slog.DiscardHandler), Volatile: vault.VolatileOptions{MaxTokens: 1 << 30}})
	ctx := context.Background()
	fields := []vault.Field{{Kind: format.CardSecurityCode, Value: "737"}}
	for i := range 1000 {
		f.tokenize(b, fmt.Sprint("s", i), fields...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.v.Tokenize(ctx, fmt.Sprint("s", i%1000), fields); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVolatileReveal: one burn-on-first-reveal per call, each of a
// token made before the timer started. A reveal includes its one store
// read of the subject key (badger, cached blocks).
func BenchmarkVolatileReveal(b *testing.B) {
	f := newFixtureWith(b, vault.Options{Logger: slog.New(slog.DiscardHandler), Volatile: vault.VolatileOptions{MaxTokens: 1 << 30}})
	ctx := context.Background()
	toks := make([]string, b.N)
	for i := range toks {
		toks[i] = f.tokenize(b, fmt.Sprint("s", i%1000), vault.Field{Kind: format.CardSecurityCode, Value: "737"})[0]
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := f.v.Detokenize(ctx, toks[i:i+1], "checkout")
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res[0].Err)
		}
	}
}
