package app_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/app"
)

// auditCalls are the common audited calls, for the size of their entries
// (BENCHMARKS.md "Audit log").
func auditCalls(tb testing.TB, cl *client.Client) map[string]func() {
	ctx := context.Background()
	toks, err := cl.Tokenize(ctx, "customer-000123", make10()...)
	if err != nil {
		tb.Fatal(err)
	}
	blobs, err := cl.Encrypt(ctx, "customer-000123", "orders.note", []byte("leave at the door"))
	if err != nil {
		tb.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return map[string]func(){
		"tokenize-deterministic": func() {
			_, err := cl.Tokenize(ctx, "customer-000123", client.Field{Kind: "email", Value: "jane@example.com", Deterministic: true})
			must(err)
		},
		"detokenize-1":  func() { _, err := cl.Detokenize(ctx, "payment", toks[0]); must(err) },
		"detokenize-10": func() { _, err := cl.Detokenize(ctx, "payment", toks...); must(err) },
		"decrypt":       func() { _, err := cl.Decrypt(ctx, "delivery", "orders.note", blobs[0]); must(err) },
		"refused": func() {
			if _, err := cl.Detokenize(ctx, "", toks[0]); err == nil {
				tb.Fatal("a reveal without a purpose was not refused")
			}
		},
	}
}

func make10() []client.Field {
	fs := make([]client.Field, 10)
	for i := range fs {
		fs[i] = client.Field{Kind: "pan", Value: fmt.Sprintf("41111111111111%02d", i)}
	}
	return fs
}

func startForAuditSize(tb testing.TB) (*app.App, *client.Client) {
	a, err := app.Start(context.Background(), dirConfig(tb.TempDir()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Stop() })
	cl, err := client.Dial(a.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cl.Close() })
	return a, cl
}

// BenchmarkAuditBytes reports the audit log bytes each common call adds
// (checkpoints included, as they come: one per 1,000 entries), through a
// real server.
//
//	go test -run XXX -bench AuditBytes ./internal/app
func BenchmarkAuditBytes(b *testing.B) {
	a, cl := startForAuditSize(b)
	for _, name := range []string{"tokenize-deterministic", "detokenize-1", "detokenize-10", "decrypt", "refused"} {
		call := auditCalls(b, cl)[name]
		b.Run(name, func(b *testing.B) {
			before := a.AuditStats().BytesWritten
			for b.Loop() {
				call()
			}
			if name == "refused" {
				// Refusal entries are written with the next group.
				cl.Detokenize(context.Background(), "payment")
			}
			b.ReportMetric(float64(a.AuditStats().BytesWritten-before)/float64(b.N), "audit-bytes/op")
		})
	}
}
