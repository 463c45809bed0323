package audit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenvault/tokenvault/crypto/aead"
	"github.com/tokenvault/tokenvault/internal/audit"
)

// BenchmarkWrite measures durable appends (write + fsync) from concurrent
// callers; group commit shares one fsync between them.
func BenchmarkWrite(b *testing.B) {
	l := open(b, filepath.Join(b.TempDir(), "audit.jsonl"), newKey(b), 1000)
	defer l.Close()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		e := entry(1)
		for pb.Next() {
			if err := l.Write(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRevealSink writes one reveal's entry per op (a detokenize of a
// subject's token, subject hashed, as the guard writes it) from
// concurrent callers with each sink, and reports the audit bytes per
// reveal and the reveals per second the log sustains. postgres: the
// table's size (heap, indexes, TOAST) per row; the file copy is written
// too and reported as file-B/reveal.
func BenchmarkRevealSink(b *testing.B) {
	h := newBenchHasher(b)
	run := func(b *testing.B, db *audit.DB) *audit.Log {
		path := filepath.Join(b.TempDir(), "audit.jsonl")
		l, err := audit.Open(audit.Options{Path: path, SigningKey: newKey(b), DB: db, Replica: "bench-1", SubjectHash: h,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		b.SetParallelism(16)
		var n atomic.Int64
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(n.Add(1))
				e := entry(i)
				e.Subject = fmt.Sprintf("cust-%d", i%1000)
				if err := l.Write(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reveals/s")
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		st := l.Stats()
		b.ReportMetric(float64(st.BytesWritten)/float64(b.N), "file-B/reveal")
		if db != nil {
			b.ReportMetric(float64(st.DB.Rows)/float64(max(st.DB.Batches, 1)), "rows/batch")
		}
		return l
	}
	b.Run("file", func(b *testing.B) { run(b, nil) })
	b.Run("postgres", func(b *testing.B) {
		pg, db := auditDB(b)
		run(b, db)
		ctx := context.Background()
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

func newBenchHasher(b *testing.B) func(string) (string, error) {
	lk, err := aead.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	defer lk.Zero()
	h, err := audit.NewSubjectHasher(lk)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(h.Zero)
	return h.Hash
}
