package vault_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tokenvault/tokenvault/vault"
	"github.com/tokenvault/tokenvault/vault/format"
)

// Durable writes: every Tokenize is an fsync. Compare "serial" with
// "parallel-64" to see badger group concurrent commits into one sync
// (the parallel variant should be several times faster per operation).
func BenchmarkTokenize(b *testing.B) {
	for _, bc := range []struct {
		name  string
		par   int
		batch int
	}{{"serial", 0, 1}, {"parallel-64", 64, 1}, {"batch-100", 0, 100}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			fields := make([]vault.Field, bc.batch)
			for i := range fields {
				fields[i] = vault.Field{Kind: format.PAN, Value: "4111111111111111"}
			}
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			if bc.par == 0 {
				for i := 0; b.Loop(); i++ {
					if _, err := f.v.Tokenize(ctx, fmt.Sprint("s", i%1000), fields); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(bc.par)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := n.Add(1)
						if _, err := f.v.Tokenize(ctx, fmt.Sprint("s", i%1000), fields); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(bc.batch*b.N)/b.Elapsed().Seconds(), "fields/s")
		})
	}
}

func BenchmarkDetokenize(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	toks, err := f.v.Tokenize(ctx, "s", []vault.Field{{Kind: format.PAN, Value: "4111111111111111"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := f.v.Detokenize(ctx, toks, "bench")
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res[0].Err)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	items := []vault.EncryptItem{{Plaintext: []byte("1 Main St, Springfield"), Context: "orders.address"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Encrypt(ctx, "s", items); err != nil {
			b.Fatal(err)
		}
	}
}
