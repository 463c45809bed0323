package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenvault/tokenvault/client"
	"github.com/tokenvault/tokenvault/internal/app"
	"github.com/tokenvault/tokenvault/internal/audit"
	"github.com/tokenvault/tokenvault/internal/config"
	"github.com/tokenvault/tokenvault/internal/pgtest"
)

// With auth.audit.sink postgres a reveal waits for its row: while the
// database refuses, detokenize fails with UNAVAILABLE and returns no
// value; once it answers, reveals resume, and the table holds the
// server's chain.
func TestAuditDBSinkFailClosed(t *testing.T) {
	pg := pgtest.New(t)
	ctx := context.Background()
	cfg := dirConfig(t.TempDir())
	cfg.Auth.Audit.Sink = config.AuditSinkPostgres
	cfg.Auth.Audit.Postgres.DSN = pg.DSN
	cfg.Replica.ID = "r1"
	if _, err := app.Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "tokenvault store migrate") {
		t.Fatalf("start without the audit schema: %v", err)
	}
	if _, _, err := audit.MigratePostgres(ctx, pg.DSN); err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	cl, err := client.Dial(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	toks, err := cl.Tokenize(ctx, "s1", client.Field{Kind: "name", Value: "Ada Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Detokenize(ctx, "test", toks...); err != nil {
		t.Fatal(err)
	}
	restore := pg.Refuse(t)
	vals, err := cl.Detokenize(ctx, "test", toks...)
	if status.Code(err) != codes.Unavailable || len(vals) != 0 {
		t.Fatalf("reveal with the audit database down: %v %v", vals, err)
	}
	restore()
	deadline := time.Now().Add(60 * time.Second)
	for {
		vals, err = cl.Detokenize(ctx, "test", toks...)
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("reveal after the database is back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(vals) != 1 || vals[0].Value != "Ada Lovelace" || vals[0].Err != nil {
		t.Fatalf("values %v", vals)
	}
	st := a.AuditStats().DB
	if st.WriteErrors == 0 || st.Batches == 0 || st.Lag != 0 {
		t.Errorf("stats %+v", st)
	}
	cl.Close()
	a.Stop()
	db, err := audit.OpenDB(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reps, err := db.Verify(ctx, nil, "r1")
	if err != nil || len(reps) != 1 || reps[0].Entries < 3 {
		t.Fatalf("the table's chain: %v %+v", err, reps)
	}
}

// BenchmarkRevealAuditSink: detokenize ×1 from 32 concurrent callers
// through a real server (gRPC, guard, badger store), with each audit
// sink: reveals per second, and the audit bytes each reveal adds (the
// file's; with postgres also the table's: heap, primary key and hash
// indexes per row). BENCHMARKS.md "Per sink".
//
//	CI=true go test -run XXX -bench RevealAuditSink -benchtime 5000x ./internal/app
func BenchmarkRevealAuditSink(b *testing.B) {
	for _, sink := range []string{config.AuditSinkFile, config.AuditSinkPostgres} {
		b.Run(sink, func(b *testing.B) {
			ctx := context.Background()
			cfg := dirConfig(b.TempDir())
			var pg *pgtest.DB
			if sink == config.AuditSinkPostgres {
				pg = pgtest.New(b)
				if _, _, err := audit.MigratePostgres(ctx, pg.DSN); err != nil {
					b.Fatal(err)
				}
				cfg.Auth.Audit.Sink, cfg.Auth.Audit.Postgres.DSN = sink, pg.DSN
			}
			a, err := app.Start(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Stop()
			cl, err := client.Dial(a.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			toks, err := cl.Tokenize(ctx, "customer-000123", client.Field{Kind: "pan", Value: "4111111111111111"})
			if err != nil {
				b.Fatal(err)
			}
			before := a.AuditStats().BytesWritten
			b.SetParallelism(16)
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := cl.Detokenize(ctx, "payment", toks[0]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reveals/s")
			b.ReportMetric(float64(a.AuditStats().BytesWritten-before)/float64(b.N), "file-B/reveal")
			if pg == nil {
				return
			}
			st := a.AuditStats().DB
			b.ReportMetric(float64(st.Rows)/float64(max(st.Batches, 1)), "rows/batch")
			cl.Close()
			a.Stop()
			c, err := pgx.Connect(ctx, pg.DSN)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(ctx)
			c.Exec(ctx, `VACUUM ANALYZE tokenvault_audit`)
			var size, rows int64
			if err := c.QueryRow(ctx, `SELECT pg_total_relation_size('tokenvault_audit'), (SELECT count(*) FROM tokenvault_audit)`).Scan(&size, &rows); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(size)/float64(rows), "db-B/reveal")
		})
	}
}
