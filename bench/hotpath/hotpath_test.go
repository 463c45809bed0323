// Package hotpath benchmarks one call through the whole server in one
// process: the same wiring as `tokenvault serve` (internal/app: badger on
// disk with durable group commit, the age keyring, the hash-chained audit
// log with its fsync, Prometheus interceptors, the access log line to a
// file, the guard with an API key and a policy), over a loopback TCP
// connection with the generated client.
//
// It exists to profile and count the allocations of the interceptor chain
// (issue 18) with figures that do not depend on how busy the machine is:
//
//	go test -run '^$' -bench HotPath -benchmem -benchtime 20000x \
//	    -cpuprofile cpu.out ./bench/hotpath
//	go tool pprof -top -focus 'logUnary' -ignore 'grpcserver.\(\*Server\).(Tokenize|Detokenize)$' cpu.out
//
// allocs/op and B/op count the client and the server together (same
// process); cpu-µs/op is the process's user+system CPU per call (client
// included), for A/B comparisons of two builds, not a figure to quote
// against the echo (tvbench measures that).
package hotpath

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/crypto/kek/agekeyring"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
	pb "github.com/tokenvault/tokenvault/proto/tokenvault/v1"
)

// start runs a production-like server and returns a client for it.
func start(b *testing.B) pb.TokenVaultClient {
	b.Helper()
	dir := b.TempDir()
	apiKey, hash, err := auth.NewAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.yaml")
	err = os.WriteFile(policy, []byte("version: 1\nidentities:\n  - api_key: bench\n    roles: [bench]\n"+
		"roles:\n  bench:\n    - operations: [tokenize]\n    - operations: [detokenize]\n      purposes: [bench]\n"), 0o600)
	if err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logf.Close() })
	a, err := app.Start(context.Background(), config.Config{
		Listen:  "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"),
		KEK:     config.KEKConfig{Keyring: agekeyring.Config{Path: filepath.Join(dir, "keys", "keyring.age"), IdentityFile: filepath.Join(dir, "keys", "identity.txt")}},
		Metrics: config.MetricsConfig{Listen: "127.0.0.1:0"},
		Auth: config.AuthConfig{PolicyFile: policy, PolicyPollInterval: -1,
			APIKeys: []auth.APIKey{{Name: "bench", Hash: hash}}},
		// The limiter stays on the path (it is part of the guard) with a
		// rate no benchmark reaches.
		Limits: config.LimitsConfig{Tokenize: config.RateConfig{FieldsPerSecond: 1e9, Burst: 1e9}},
		// The access line goes to a file, as a server's stderr would.
		Logger: slog.New(slog.NewTextHandler(logf, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Stop() })
	cc, err := grpc.NewClient(a.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(client.APIKeyCredentials(apiKey)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return pb.NewTokenVaultClient(cc)
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// inFlight is the calls in flight: enough for the group commit and the
// audit log to batch as under load (tvbench's default is 64).
const inFlight = 32

// pans returns n distinct card numbers with valid check digits.
func pans(n int) []string {
	out := make([]string, n)
	for i := range out {
		body := []byte(fmt.Sprintf("411111%09d", i))
		sum := 0
		for j := len(body) - 1; j >= 0; j-- {
			d := int(body[j] - '0')
			if (len(body)-j)%2 == 1 { // doubled: every second digit from the check digit
				if d *= 2; d > 9 {
					d -= 9
				}
			}
			sum += d
		}
		out[i] = string(body) + string(rune('0'+(10-sum%10)%10))
	}
	return out
}

func BenchmarkHotPath(b *testing.B) {
	batch := pans(100)
	for _, op := range []string{"tokenize", "detokenize", "tokenize-x100"} {
		name := op
		if op != "tokenize-x100" {
			name += "-x1"
		}
		b.Run(name, func(b *testing.B) {
			tv := start(b)
			ctx := context.Background()
			field := func() []*pb.Field { return []*pb.Field{{Kind: pb.Kind_KIND_PAN, Value: "4111111111111111"}} }
			if op == "tokenize-x100" {
				// 100 random-token fields per call (tvbench's "tokenize x100").
				field = func() []*pb.Field {
					fs := make([]*pb.Field, len(batch))
					for i, v := range batch {
						fs[i] = &pb.Field{Kind: pb.Kind_KIND_PAN, Value: v}
					}
					return fs
				}
			}
			resp, err := tv.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: "bench-subject", Fields: field()})
			if err != nil {
				b.Fatal(err)
			}
			token := resp.GetTokens()[0]
			call := func() error {
				if op != "detokenize" {
					_, err := tv.Tokenize(ctx, &pb.TokenizeRequest{SubjectId: "bench-subject", Fields: field()})
					return err
				}
				r, err := tv.Detokenize(ctx, &pb.DetokenizeRequest{Tokens: []string{token}, Purpose: "bench"})
				if err == nil && r.GetResults()[0].GetValue() != "4111111111111111" {
					b.Fatal("detokenize: wrong value")
				}
				return err
			}
			for range 200 { // warm: connections, caches, goroutine stacks
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism(inFlight)
			b.ReportAllocs()
			cpu0 := cpuSeconds()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric((cpuSeconds()-cpu0)*1e6/float64(b.N), "cpu-µs/op")
			if op == "tokenize-x100" {
				b.ReportMetric((cpuSeconds()-cpu0)*1e6/float64(b.N*len(batch)), "cpu-µs/field")
			}
		})
	}
}
